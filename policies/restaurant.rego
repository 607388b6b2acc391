# /restaurant: open to the kitchen crew and to staff.
package routes.restaurant

import rego.v1

default allow := false

allowed_groups := {"kitchen", "staff"}

allow if {
	some group in input.user.groups
	group in allowed_groups
}

reason := "not_in_group" if not allow

# The app shows the kitchen view to kitchen members.
headers := {"X-Restaurant-Role": "kitchen"} if {
	allow
	"kitchen" in input.user.groups
}
