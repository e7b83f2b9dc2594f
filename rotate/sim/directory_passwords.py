"""Password changes at the directory stand-in: Modify of the password attribute, RFC 3062.

ldap flavour: Modify of `userPassword` (an admin reset) and Password Modify, answered like
slapd; ad flavour: Modify of `unicodePwd` over TLS (replace: an admin reset; delete the old
value and add the new one: a user's own change), answered like Samba. Every change (admin
resets too) is checked against the state's policy; the hang_changes fault is applied here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ldap3.protocol import rfc3062  # type: ignore[import-untyped,unused-ignore]

from rotate.sim.directory_state import DirectoryState, Entry, Session
from rotate.sim.ldap_codec import (
    BAD_INPUT,
    CONSTRAINT_VIOLATION,
    INSUFFICIENT_ACCESS_RIGHTS,
    NO_SUCH_OBJECT,
    PROTOCOL_ERROR,
    STRONGER_AUTH_REQUIRED,
    SUCCESS,
    UNWILLING_TO_PERFORM,
    as_text,
    attr_name,
    decode,
    is_present,
)

AD_WILL_NOT_PERFORM = "0000001F: SvcErr: DSID-031A126C, problem 5003 (WILL_NOT_PERFORM), data 0"
AD_INSUFFICIENT_ACCESS = (
    "00000005: SecErr: DSID-03152E29, problem 4003 (INSUFF_ACCESS_RIGHTS), data 0"
)
AD_NO_OBJECT = "0000208D: NameErr: DSID-03100241, problem 2001 (NO_OBJECT), data 0"
AD_WRONG_OLD_VALUE = (
    "00000056: AtrErr: DSID-03191083, problem 1005 (CONSTRAINT_ATT_TYPE), data 0, "
    "Att 9005a (unicodePwd)"
)
AD_BAD_VALUE = (
    "00000057: LdapErr: DSID-0C090D11, comment: Error in attribute conversion operation, data 0"
)

#: a Modify's change operations (RFC 4511 4.6)
_ADD, _DELETE, _REPLACE = 0, 1, 2

Answer = tuple[int, str]  # a result code and its diagnostic message


class PasswordChanges:
    """The password-changing operations of one directory stand-in."""

    def __init__(self, state: DirectoryState) -> None:
        self.state = state

    async def modify(self, request: Any, session: Session) -> Answer:
        """A ModifyRequest: only a change of the flavour's password attribute is accepted."""
        ad = self.state.flavour == "ad"
        password_attr = "unicodepwd" if ad else "userpassword"
        changes = [
            (
                int(change["operation"]),
                attr_name(change["modification"]["type"]),
                [bytes(v) for v in change["modification"]["vals"]],
            )
            for change in request["changes"]
        ]
        if not changes or any(attr != password_attr for _, attr, _ in changes):
            return UNWILLING_TO_PERFORM, "only password changes are supported by this directory"
        if ad and not session.tls:
            return UNWILLING_TO_PERFORM, AD_WILL_NOT_PERFORM
        if session.bound is None:
            return INSUFFICIENT_ACCESS_RIGHTS, AD_INSUFFICIENT_ACCESS if ad else "no write access"
        entry = self._target(as_text(request["object"]))
        if entry is None:
            return NO_SUCH_OBJECT, AD_NO_OBJECT if ad else ""
        ops = [op for op, _, _ in changes]
        values = [vals for _, _, vals in changes]
        if ops == [_REPLACE] and len(values[0]) == 1:
            return await self._reset(entry, values[0][0], session)
        if ad and ops == [_DELETE, _ADD] and all(len(vals) == 1 for vals in values):
            return await self._own_change(entry, values[0][0], values[1][0], session)
        return UNWILLING_TO_PERFORM, AD_WILL_NOT_PERFORM if ad else "unsupported modification"

    async def _reset(self, entry: Entry, value: bytes, session: Session) -> Answer:
        """A replace of the password attribute: an admin reset."""
        ad = self.state.flavour == "ad"
        if not session.admin:
            return INSUFFICIENT_ACCESS_RIGHTS, (
                AD_INSUFFICIENT_ACCESS if ad else "no write access to entry"
            )
        new = _ad_password(value) if ad else _utf8(value)
        if new is None:
            return UNWILLING_TO_PERFORM, AD_BAD_VALUE
        return await self._apply(entry, new)

    async def _own_change(
        self, entry: Entry, old_value: bytes, new_value: bytes, session: Session
    ) -> Answer:
        """AD: delete the old value, add the new one: a user changing their own password."""
        old = _ad_password(old_value)
        new = _ad_password(new_value)
        if old is None or new is None:
            return UNWILLING_TO_PERFORM, AD_BAD_VALUE
        if session.bound is None or session.bound.key != entry.key:
            return INSUFFICIENT_ACCESS_RIGHTS, AD_INSUFFICIENT_ACCESS
        with self.state.lock:
            old_ok = entry.password_is(old)
        if not old_ok:
            return CONSTRAINT_VIOLATION, AD_WRONG_OLD_VALUE
        return await self._apply(entry, new)

    async def password_modify(self, request: Any, session: Session) -> Answer:
        """RFC 3062 Password Modify (ldap flavour), answered like slapd."""
        bound = session.bound
        if bound is None:
            return STRONGER_AUTH_REQUIRED, "only authenticated users may change passwords"
        value = request["requestValue"]
        identity = old = new = None
        if is_present(value):
            try:
                fields = decode(rfc3062.PasswdModifyRequestValue(), bytes(value))
            except BAD_INPUT:
                return PROTOCOL_ERROR, "data decoding error"
            identity = _optional_utf8(fields["userIdentity"])
            old = _optional_utf8(fields["oldPasswd"])
            new = _optional_utf8(fields["newPasswd"])
        if identity is None:
            entry: Entry | None = bound
        elif identity.startswith("u:"):
            entry = self.state.user(identity[2:])
        else:
            entry = self._target(identity.removeprefix("dn:"))
        if entry is None:
            return NO_SUCH_OBJECT, ""
        if new is None:
            return UNWILLING_TO_PERFORM, "password generation is not supported"
        is_self = entry.key == bound.key
        if not bound.admin and not is_self:
            return INSUFFICIENT_ACCESS_RIGHTS, "insufficient access"
        if old is None and not bound.admin:
            return UNWILLING_TO_PERFORM, "old password required"
        if old is not None:
            with self.state.lock:
                old_ok = entry.password_is(old)
            if not old_ok:
                return UNWILLING_TO_PERFORM, "unwilling to verify old password"
        return await self._apply(entry, new)

    async def _apply(self, entry: Entry, password: str) -> Answer:
        """Set a password (policy checked), or hang when the hang_changes fault is on."""
        state = self.state
        if state.hang_changes:
            if state.apply_before_hang:
                state.change(entry, password)
            with state.lock:
                state.counters.hung_changes += 1
            await asyncio.Event().wait()  # until the server closes
        problem = state.change(entry, password)
        if problem is not None:
            return CONSTRAINT_VIOLATION, problem
        return SUCCESS, ""

    def _target(self, dn: str) -> Entry | None:
        try:
            return self.state.find(dn)
        except ValueError:
            return None


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _optional_utf8(value: Any) -> str | None:
    """An OPTIONAL OCTET STRING as text: None when absent (or not UTF-8)."""
    return _utf8(bytes(value)) if is_present(value) else None


def _ad_password(raw: bytes) -> str | None:
    """A unicodePwd value: the password in double quotes, UTF-16-LE; None if not that."""
    try:
        text = raw.decode("utf-16-le")
    except UnicodeDecodeError:
        return None
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return None
    return text[1:-1]
