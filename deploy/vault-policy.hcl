# Least-privilege Vault/OpenBao policy for rotate, on the demo layout: the KV v2 mount
# "secret" and the prefix "rotate" ([vault] mount and prefix). For another layout, replace
# "secret/" and "/rotate/" below; a pending_prefix outside the prefix, or inventory rows
# whose vault_path lies outside it, need the same rules on those paths too.
#
#   bao policy write rotate deploy/vault-policy.hcl
#   bao write auth/approle/role/rotate token_policies=rotate token_ttl=15m token_max_ttl=4h
#
# Keep Vault's "default" policy on the role's tokens (the default): it lets a run ask
# sys/capabilities-self what its token may do, so that a run this policy does not cover is
# refused before any change. Nothing here grants anything under sys/, nor outside the
# prefix, nor "delete", "destroy" or "undelete" of a password version: a rotation only adds
# KV versions, and the previous password stays readable for rollback and audit.

# Secret data under the prefix: the current passwords (rotate/accounts/<account>, or
# rotate/<endpoint>/<kind>/... for a row that names no account), the journal records that
# stage a batch's candidates (rotate/_pending/<run id>-<n>), the records of usages that did
# not take their account's password (rotate/_stale/<digest>) and the run leases
# (rotate/_lease/...).
#   read:   a secret's current value, a journal record (checks, resume, reconcile)
#   create: a first version (never-rotated secret, new journal record, free lease)
#   update: each later version, always with check-and-set
path "secret/data/rotate/*" {
  capabilities = ["read", "create", "update"]
}

# Secret metadata under the prefix: versions, ages and custom_metadata.
#   read:   current version and the time of the last rotation (the version's created_time)
#   list:   drift (secrets no inventory row names) and the journal records of unfinished
#           rotations
#   patch:  the last failed attempt, or an adopted password's version, merged into
#           custom_metadata
#   create, update: the same where PATCH is missing (read-modify-write), or on a secret
#           that has no version yet (a failure noted before its first rotation)
# No "delete": that would remove every version of a current password.
path "secret/metadata/rotate/*" {
  capabilities = ["read", "list", "patch", "create", "update"]
}

# The pending area: a journal record is deleted with all its versions once each of its
# candidates has been promoted (it is then the current version) or discarded (the target
# definitely refused it). This rule is more specific than the one above and replaces it
# here: read and list again.
path "secret/metadata/rotate/_pending/*" {
  capabilities = ["read", "list", "delete"]
}

# Stale usages: an account's record is deleted once each of its usages holds the account's
# current password again (read and list again, as above).
path "secret/metadata/rotate/_stale/*" {
  capabilities = ["read", "list", "delete"]
}

# The run lease (one writer at a time): released by deleting it at the end of a run.
path "secret/metadata/rotate/_lease/*" {
  capabilities = ["delete"]
}

# The token itself: looked up at the start of each run (who runs, and how long it lives),
# renewed at two thirds of its TTL during a long run, revoked at the end when the run logged
# in for it (AppRole, Kubernetes). Vault's default policy grants these three as well.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/revoke-self" {
  capabilities = ["update"]
}

# Only when a password policy in the config says generator = "vault": the candidate comes
# from Vault's password policy of that name. Uncomment and name it.
# path "sys/policies/password/corp-remote-access/generate" {
#   capabilities = ["read"]
# }
