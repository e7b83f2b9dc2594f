"""The settings of a Spark View gateway endpoint: its API's [assumed] facts, and where its
gateway password comes from."""

from __future__ import annotations

from dataclasses import dataclass

from rotate.vendors.base import EndpointSettings


@dataclass(frozen=True)
class SparkViewSettings(EndpointSettings):
    """One Spark View gateway; every [assumed] API fact is a setting here."""

    gateway_password_env: str | None = None
    gateway_password_vault: str | None = None  # "<path>#<key>" in the KV mount
    user_param: str = "user"
    password_param: str = "pwd"  # noqa: S105 - a parameter name
    domain_param: str = "domain"
    send_definition_on_update: bool = True  # resend displayName/server: update may replace
    # Access links (/SYMLINK) whose `parameters` embed a rotated server logon are updated
    # after the rotation (listed once per run).
    update_links: bool = True
    link_server_column: str = "resourceId"  # the list column holding the link's server id
    # Resend the link's server, password, validFrom, validTo and comment with each update
    # (update may replace); validTime is never resent, as it would restart the validity.
    send_link_fields_on_update: bool = True
    # After a rotation, reset the account's two-factor enrolment (/CONTROL?target=twofa).
    reset_twofa: bool = False
    # The gateway answers every failure as 500 {"error:": ...}, even one after it applied an
    # update; only these words (lower case) in a write's error make it a definite refusal.
    write_refusals: tuple[str, ...] = (
        "not found",
        "rejected",
        "invalid",
        "missing",
        "already exists",
        "unknown action",
        "denied",
        "forbidden",
        "unauthori",
    )

    # The words (lower case) of the `error:` answer for a server id the gateway does not
    # define (the manual: "not found"); such a usage is skipped, not failed.
    missing_errors: tuple[str, ...] = ("not found",)

    def problems(self) -> list[str]:
        """What makes the gateway password's source unusable."""
        where = f"endpoints.{self.name}"
        found = []
        if not (self.gateway_password_env or self.gateway_password_vault):
            found.append(
                f"{where}: a sparkview endpoint needs gateway_password_env "
                "or gateway_password_vault"
            )
        if self.gateway_password_vault and "#" not in self.gateway_password_vault:
            found.append(f"{where}.gateway_password_vault: expected '<path>#<key>'")
        return found
