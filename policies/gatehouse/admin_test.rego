package gatehouse.admin_test

import rego.v1

import data.gatehouse.admin

test_admins_allowed if {
	admin.allow with input as {"user": {"groups": ["gatehouse-admins"]}}
}

test_staff_denied if {
	not admin.allow with input as {"user": {"groups": ["staff"]}}
}
