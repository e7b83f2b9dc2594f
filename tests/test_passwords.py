"""Password generation: length, classes, alphabet, randomness source, the VNC limit."""

from __future__ import annotations

import secrets
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotate import passwords
from rotate.models import Secret
from rotate.settings import DEFAULT_SYMBOLS, PolicySettings, policy_problems
from rotate.vendors.remotix.kinds import COMPUTER


def _classes_in(value: str, policy: PolicySettings) -> dict[str, bool]:
    return {
        "lower": any(c in string.ascii_lowercase for c in value),
        "upper": any(c in string.ascii_uppercase for c in value),
        "digits": any(c in string.digits for c in value),
        "symbols": any(c in policy.symbol_set for c in value),
    }


def test_default_policy_gives_24_characters_of_every_class() -> None:
    policy = PolicySettings(name="default")
    secret = passwords.generate(policy)
    assert isinstance(secret, Secret)
    value = secret.reveal()
    assert len(value) == 24
    assert all(_classes_in(value, policy).values())
    allowed = set(string.ascii_letters + string.digits + DEFAULT_SYMBOLS)
    assert set(value) <= allowed


def test_the_secret_does_not_print_its_value() -> None:
    secret = passwords.generate(PolicySettings(name="default"))
    assert secret.reveal() not in repr(secret)
    assert str(secret) == "***"


def test_vnc_policy_gives_exactly_8_characters_with_all_classes() -> None:
    policy = PolicySettings(name="vnc", length=8, max_length=8)
    for _ in range(200):
        value = passwords.generate(policy).reveal()
        assert len(value) == 8
        assert all(_classes_in(value, policy).values())


def test_disabled_classes_never_appear() -> None:
    policy = PolicySettings(name="digits", length=12, lower=False, upper=False, symbols=False)
    for _ in range(100):
        value = passwords.generate(policy).reveal()
        assert value.isdigit()
        assert len(value) == 12


def test_only_the_policys_symbols_are_used() -> None:
    policy = PolicySettings(name="p", length=40, symbol_set="#")
    for _ in range(50):
        value = passwords.generate(policy).reveal()
        symbols = {c for c in value if not c.isalnum()}
        assert symbols == {"#"}


def test_length_equal_to_the_number_of_classes() -> None:
    policy = PolicySettings(name="tight", length=4)
    for _ in range(200):
        value = passwords.generate(policy).reveal()
        assert sorted(_classes_in(value, policy).values()) == [True] * 4


def test_many_generations_are_distinct() -> None:
    policy = PolicySettings(name="vnc", length=8)
    values = {passwords.generate(policy).reveal() for _ in range(2000)}
    # 8 characters over 75 symbols: a repeat in 2,000 draws is a broken generator
    assert len(values) == 2000


def test_positions_are_shuffled() -> None:
    # the required characters are drawn first: without the shuffle, position 0 would always
    # be lower case, position 1 upper case, ...
    policy = PolicySettings(name="p", length=8)
    first = {passwords.generate(policy).reveal()[0] for _ in range(300)}
    assert any(c.isupper() for c in first)
    assert any(c.islower() for c in first)
    assert any(c.isdigit() for c in first)


def test_draws_come_from_the_secrets_module(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_choice = secrets.choice

    def spy(seq: str) -> str:
        calls.append(seq)
        return real_choice(seq)

    monkeypatch.setattr(secrets, "choice", spy)
    passwords.generate(PolicySettings(name="default", length=10))
    assert len(calls) == 10


def test_an_unusable_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one character class"):
        passwords.generate(
            PolicySettings(name="none", lower=False, upper=False, digits=False, symbols=False)
        )
    with pytest.raises(ValueError, match="too short"):
        passwords.generate(PolicySettings(name="short", length=3))


def test_duplicate_symbols_are_not_favoured() -> None:
    policy = PolicySettings(name="p", symbol_set="!!!!!!!!!#")
    assert passwords.alphabets(policy)[-1] == "!#"


@pytest.mark.parametrize(
    ("protocol", "length", "refused"),
    [
        ("VNC", 9, True),
        ("vnc", 24, True),
        ("VNC", 8, False),
        ("VNC", 6, False),
        ("RDP", 64, False),
        ("APPLE", 24, False),
        ("NEAR", 24, False),
    ],
)
def test_validate_policy_for(protocol: str, length: int, refused: bool) -> None:
    limit = COMPUTER.max_password(protocol)  # a cloud computer's connection: VNC takes 8
    policy = PolicySettings(name="mine", length=length)
    message = passwords.validate_policy_for(protocol, policy, limit)
    assert (message is not None) == refused
    if message is not None:
        assert "at most 8 characters" in message
        assert "'mine'" in message


_policies = st.builds(
    PolicySettings,
    name=st.just("p"),
    length=st.integers(min_value=4, max_value=128),
    lower=st.booleans(),
    upper=st.booleans(),
    digits=st.booleans(),
    symbols=st.booleans(),
    symbol_set=st.text(alphabet=DEFAULT_SYMBOLS + "$&*()[]{}<>/\\|;,'\"`", min_size=1),
).filter(lambda p: not policy_problems(p))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_policies)
def test_any_valid_policy_is_honoured(policy: PolicySettings) -> None:
    value = passwords.generate(policy).reveal()
    assert len(value) == policy.length
    present = _classes_in(value, policy)
    # the classes are disjoint (a symbol is never alphanumeric): each is present iff enabled
    for name in ("lower", "upper", "digits", "symbols"):
        assert present[name] == getattr(policy, name), name
    assert set(value) <= set("".join(passwords.alphabets(policy)))
