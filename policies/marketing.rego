# /marketing: the marketing group only.
package routes.marketing

import rego.v1

default allow := false

allow if "marketing" in input.user.groups

reason := "not_in_marketing" if not allow
