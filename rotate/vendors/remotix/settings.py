"""The settings of a Remotix endpoint: its API's [assumed] facts, and the cloud computers
`rotate discover` reads."""

from __future__ import annotations

from dataclasses import dataclass

from rotate.vendors.base import EndpointSettings


@dataclass(frozen=True)
class RemotixSettings(EndpointSettings):
    """One Remotix endpoint; every [assumed] API fact is a setting here."""

    token_env: str | None = None  # bearer token, sent when the variable is set
    probe_path: str = "/groups"
    near_key: str = "rxp"
    rdp_key: str = "rdp"
    apple_key: str = "apple"
    vnc_key: str = "apple"  # a plain VNC server's key name is not documented
    verify_computers: bool = True
    # The status the API answers for a computer, connection or group that is not there (the
    # manual says only "errors are 4xx"): such a usage is skipped, not failed.
    missing_status: int = 404
    # The API has no documented call that lists cloud computers: `rotate discover` reads
    # the connections of these computer ids. (Values are lower-cased like every list key;
    # Remotix computer ids are numeric.)
    computers: tuple[str, ...] = ()

    def key(self, protocol: str) -> str:
        """The prefix of a protocol's credential keys (`rdp` in `rdp.username`)."""
        keys = {
            "NEAR": self.near_key,
            "RDP": self.rdp_key,
            "APPLE": self.apple_key,
            "VNC": self.vnc_key,
        }
        return keys[protocol]
