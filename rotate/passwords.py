"""Password generation from a policy, with the `secrets` module only."""

from __future__ import annotations

import secrets
import string

from rotate.models import Secret
from rotate.settings import PolicySettings, policy_problems

__all__ = ["alphabets", "generate", "validate_policy_for"]


def alphabets(policy: PolicySettings) -> list[str]:
    """The character classes the policy enables, each as a string without repeats."""
    classes = []
    if policy.lower:
        classes.append(string.ascii_lowercase)
    if policy.upper:
        classes.append(string.ascii_uppercase)
    if policy.digits:
        classes.append(string.digits)
    if policy.symbols:
        # a symbol listed twice would be drawn twice as often
        classes.append("".join(dict.fromkeys(policy.symbol_set)))
    return classes


def generate(policy: PolicySettings) -> Secret:
    """A fresh password of exactly `policy.length` characters, one at least of each class."""
    problems = policy_problems(policy)
    if problems:
        # load_settings rejects such a policy; reaching here is a programming error
        raise ValueError("; ".join(problems))
    classes = alphabets(policy)
    union = "".join(classes)
    chars = [secrets.choice(c) for c in classes]
    chars += [secrets.choice(union) for _ in range(policy.length - len(chars))]
    # the first characters come one per class; shuffling hides which position holds which
    secrets.SystemRandom().shuffle(chars)
    return Secret("".join(chars))


def validate_policy_for(
    protocol: str, policy: PolicySettings, max_length: int | None
) -> str | None:
    """Why `policy` cannot serve a logon of this protocol, which takes passwords of at most
    `max_length` characters (its kind's limit: see `KindSpec.max_password`), or None when it
    can. A longer password would be cut short by the target (a VNC server checks 8
    characters), so what Vault keeps would not be what the target checks."""
    if max_length is None or policy.length <= max_length:
        return None
    return (
        f"a {protocol.upper()} password is at most {max_length} characters, "
        f"but policy {policy.name!r} has length {policy.length}; name a policy of "
        f"length {max_length} or less"
    )
