"""The config file and the environment: what loads, what wins, and every way to get it wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotate.errors import ConfigError
from rotate.models import Secret
from rotate.settings import Settings, load_settings

DEMO = Path(__file__).resolve().parent.parent / "inventories" / "demo.toml"
TOKEN = "hvs.not-a-real-token-7f3a9c"

REMOTIX = """
[endpoints.office-mac]
system = "remotix"
url = "http://127.0.0.1:8750"
"""


@pytest.fixture(autouse=True)
def _no_token_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # load_settings falls back to ~/.vault-token: keep the developer's real one out of tests
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rotate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _rejected(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(_config(tmp_path, text), env=env or {})
    return str(info.value)


def test_the_demo_config_loads() -> None:
    settings = load_settings(DEMO, env={})
    assert set(settings.endpoints) == {"office-mac", "branch-office", "gw1", "gw2"}
    assert settings.endpoints["office-mac"].system == "remotix"
    assert settings.endpoints["gw1"].system == "sparkview"
    assert settings.endpoints["gw1"].gateway_password_env == "GW1_PASSWORD"
    assert settings.endpoints["gw2"].gateway_password_env == "GW2_PASSWORD"
    assert settings.policies["default"].length == 24
    assert settings.policies["vnc"].length == 8
    assert settings.policies["long"].length == 32
    assert (settings.vault.mount, settings.vault.prefix) == ("secret", "rotate")
    assert settings.vault.pending_root == "rotate/_pending"
    assert settings.run.concurrency == 64
    assert settings.run.timeout_s == 10.0
    assert isinstance(settings.run.timeout_s, float)
    assert settings.source == str(DEMO)


def test_no_file_gives_the_defaults() -> None:
    settings = load_settings(None, env={})
    assert settings == Settings(source="<defaults>", env={})
    assert set(settings.policies) == {"default"}


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = _config(tmp_path, '[vault]\naddr = "http://10.0.0.1:8200"\n')
    env = {
        "VAULT_ADDR": "https://vault.example.net:8200",
        "VAULT_TOKEN": TOKEN,
        "VAULT_CACERT": "/etc/ssl/vault-ca.pem",
        "VAULT_NAMESPACE": "team-a",
    }
    vault = load_settings(path, env=env).vault
    assert vault.addr == "https://vault.example.net:8200"
    assert vault.token == Secret(TOKEN)
    assert vault.cacert == "/etc/ssl/vault-ca.pem"
    assert vault.namespace == "team-a"
    assert load_settings(path, env={}).vault.addr == "http://10.0.0.1:8200"


def test_the_token_file_is_read_when_vault_token_is_unset(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    path = _config(tmp_path, f'[vault]\ntoken_file = "{token_file}"\n')
    assert load_settings(path, env={}).vault.token == Secret(TOKEN)
    assert load_settings(path, env={"VAULT_TOKEN": "other"}).vault.token == Secret("other")


def test_the_token_never_shows_in_a_repr() -> None:
    settings = load_settings(DEMO, env={"VAULT_TOKEN": TOKEN, "GW1_PASSWORD": "gw-secret"})
    assert settings.vault.token is not None
    assert settings.vault.token.reveal() == TOKEN
    for text in (repr(settings), str(settings), repr(settings.vault), f"{settings.vault}"):
        assert TOKEN not in text
        assert "gw-secret" not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[run]\nconcurency = 8\n", "run: unknown key 'concurency'"),
        ("[vault]\nadress = 'x'\n", "vault: unknown key 'adress'"),
        ("[policies.vnc]\nlength = 8\nname = 'x'\n", "policies.vnc: unknown key 'name'"),
        (REMOTIX + "colour = 'red'\n", "endpoints.office-mac: unknown key 'colour'"),
        ("[runs]\nconcurrency = 8\n", "unknown section [runs]"),
    ],
)
def test_an_unknown_key_is_named(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _rejected(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[run]\nconcurrency = 'many'\n", "run.concurrency: expected int, got str"),
        ("[run]\nretries = 2.5\n", "run.retries: expected int, got float"),
        ("[run]\ntimeout_s = true\n", "run.timeout_s: expected float, got bool"),
        ("[policies.default]\nlength = '24'\n", "policies.default.length: expected int"),
        ("[policies.default]\nupper = 1\n", "policies.default.upper: expected bool"),
        (REMOTIX + "insecure = 'no'\n", "endpoints.office-mac.insecure: expected bool"),
        ("[endpoints.x]\nsystem = 'citrix'\nurl = 'http://h'\n", "endpoints.x.system"),
        ("run = 5\n", "[run] must be a table"),
        ("[policies]\nstrong = 32\n", "[policies.strong] must be a table"),
    ],
)
def test_a_wrong_type_is_named(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _rejected(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[vault]\ntoken = "s3cr3t-value"\n', "vault.token"),
        ('[vault]\nsecret_id = "s3cr3t-value"\n', "vault.secret_id"),
        (
            '[endpoints.gw1]\nsystem = "sparkview"\nurl = "http://h"\n'
            'gateway_password_env = "GW1"\ngateway_password = "s3cr3t-value"\n',
            "endpoints.gw1.gateway_password",
        ),
        (REMOTIX + 'password = "s3cr3t-value"\n', "endpoints.office-mac.password"),
    ],
)
def test_a_secret_in_the_file_is_refused_without_echoing_it(
    tmp_path: Path, text: str, key: str
) -> None:
    message = _rejected(tmp_path, text)
    assert f"{key}: secrets never live in the config file" in message
    assert "s3cr3t-value" not in message


def test_a_sparkview_endpoint_needs_a_gateway_password(tmp_path: Path) -> None:
    message = _rejected(tmp_path, '[endpoints.gw1]\nsystem = "sparkview"\nurl = "http://h"\n')
    assert "endpoints.gw1: a sparkview endpoint needs gateway_password_env" in message


def test_a_sparkview_endpoint_with_a_gateway_password_from_vault_loads(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '[endpoints.gw1]\nsystem = "sparkview"\nurl = "https://gw1.example.net"\n'
        'gateway_password_vault = "infra/sparkview/gw1#password"\n',
    )
    endpoint = load_settings(path, env={}).endpoints["gw1"]
    assert endpoint.system == "sparkview"
    assert endpoint.gateway_password_vault == "infra/sparkview/gw1#password"
    bad = '[endpoints.gw1]\nsystem = "sparkview"\nurl = "http://h"\ngateway_password_vault = "p"\n'
    assert "endpoints.gw1.gateway_password_vault: expected '<path>#<key>'" in _rejected(
        tmp_path, bad
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[policies.short]\nlength = 3\n", "policies.short.length: 3 is too short"),
        (
            "[policies.none]\nlower = false\nupper = false\ndigits = false\nsymbols = false\n",
            "policies.none: at least one character class must be enabled",
        ),
        (
            "[policies.vnc]\nlength = 12\nmax_length = 8\n",
            "policies.vnc.length: 12 exceeds max_length 8",
        ),
        ("[policies.p]\nsymbol_set = ''\n", "policies.p.symbol_set: empty while symbols"),
        ("[policies.p]\nsymbol_set = '!a'\n", "policies.p.symbol_set: only printable"),
        ("[policies.p]\nsymbol_set = '! '\n", "policies.p.symbol_set: only printable"),
        ("[policies.p]\nsymbol_set = '!€'\n", "policies.p.symbol_set: only printable"),
    ],
)
def test_a_bad_policy_is_named(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _rejected(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[vault]\naddr = "vault:8200"\n', "vault.addr: 'vault:8200' is not an http(s) URL"),
        ('[vault]\nprefix = "/rotate"\n', "vault.prefix: '/rotate' must be a non-empty path"),
        ('[vault]\nmount = ""\n', "vault.mount: '' must be a non-empty path"),
        ('[vault]\nauth = "ldap"\n', "vault.auth: 'ldap' is not supported"),
        ('[vault]\npending_prefix = "x/../y"\n', "vault.pending_prefix: 'x/../y' must be"),
        ('[vault]\npending_prefix = "rotate"\n', "vault.pending_prefix: 'rotate' must be neither"),
        ("[run]\nconcurrency = 0\n", "run.concurrency: must be greater than 0"),
        ("[run]\nretries = -1\n", "run.retries: must be 0 or more"),
        ('[endpoints.x]\nurl = "http://h"\n', "endpoints.x: missing required key 'system'"),
        ('[endpoints.x]\nsystem = "remotix"\n', "endpoints.x: missing required key 'url'"),
        (
            '[endpoints.x]\nsystem = "remotix"\nurl = "ftp://h"\n',
            "endpoints.x.url: 'ftp://h' is not an http(s) URL",
        ),
    ],
)
def test_other_bad_values_are_named(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _rejected(tmp_path, text)


def test_a_pending_prefix_apart_from_the_prefix_loads(tmp_path: Path) -> None:
    path = _config(tmp_path, '[vault]\nprefix = "rotate"\npending_prefix = "rotate-pending"\n')
    assert load_settings(path, env={}).vault.pending_root == "rotate-pending"


def test_a_bad_vault_addr_from_the_environment_is_named(tmp_path: Path) -> None:
    message = _rejected(tmp_path, "", env={"VAULT_ADDR": "127.0.0.1:8200"})
    assert "vault.addr: '127.0.0.1:8200'" in message


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    message = _rejected(
        tmp_path,
        """
[vault]
token = "s3cr3t-value"

[run]
concurency = 8
retries = "three"

[policies.short]
length = 2

[endpoints.gw1]
system = "sparkview"
url = "http://127.0.0.1:8760"
""",
    )
    for expected in (
        "vault.token: secrets never live in the config file",
        "run: unknown key 'concurency'",
        "run.retries: expected int",
        "policies.short.length: 2 is too short",
        "endpoints.gw1: a sparkview endpoint needs gateway_password_env",
    ):
        assert expected in message
    assert message.count("\n  - ") == 5


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_config(tmp_path, "[vault\naddr = 1\n"), env={})
    (tmp_path / "latin1.toml").write_bytes(b'[vault]\nprefix = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path / "latin1.toml", env={})


def test_with_endpoint_urls_replaces_only_the_named_urls() -> None:
    settings = load_settings(DEMO, env={})
    moved = settings.with_endpoint_urls({"gw1": "http://127.0.0.1:40001"})
    assert moved.endpoints["gw1"].url == "http://127.0.0.1:40001"
    assert moved.endpoints["gw2"].url == settings.endpoints["gw2"].url
    assert settings.endpoints["gw1"].url == "http://127.0.0.1:8760"  # the original is frozen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[run]\nlease_ttl_s = 0\n", "run.lease_ttl_s: must be greater than 0"),
        ("[run]\nlease_name = 'a/b'\n", "run.lease_name: 'a/b' must be one path segment"),
    ],
)
def test_bad_lease_settings_are_named(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _rejected(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[policies.p]\nlength = 100000\n", "policies.p.length: 100000 is longer than 256"),
        (
            '[endpoints."a b/c"]\nsystem = "remotix"\nurl = "http://127.0.0.1:1"\n',
            "[endpoints.a b/c]: an endpoint name is letters, digits",
        ),
    ],
)
def test_unusable_names_and_lengths_are_named(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _rejected(tmp_path, text)


def test_sparkview_write_refusals_are_a_setting(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[endpoints.gw]\nsystem = "sparkview"\nurl = "http://127.0.0.1:1"\n'
        'gateway_password_env = "GW"\nwrite_refusals = ["Locked", "not found"]\n'
    )
    settings = load_settings(config, env={})
    assert settings.endpoints["gw"].write_refusals == ("locked", "not found")
    config.write_text(config.read_text().replace('["Locked", "not found"]', '"locked"'))
    with pytest.raises(ConfigError, match="write_refusals"):
        load_settings(config, env={})
