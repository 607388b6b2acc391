package routes.marketing_test

import rego.v1

import data.routes.marketing

test_marketing_allowed if {
	marketing.allow with input as {"user": {"groups": ["marketing"]}}
}

test_staff_denied if {
	not marketing.allow with input as {"user": {"groups": ["staff"]}}
	marketing.reason == "not_in_marketing" with input as {"user": {"groups": ["staff"]}}
}
