# The admin UI and API (route `gatehouse-admin`): members of gatehouse-admins only.
package gatehouse.admin

import rego.v1

default allow := false

allow if "gatehouse-admins" in input.user.groups

reason := "not_an_admin" if not allow
