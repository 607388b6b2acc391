package routes.restaurant_test

import rego.v1

import data.routes.restaurant

test_kitchen_allowed if {
	restaurant.allow with input as {"user": {"groups": ["kitchen"]}}
}

test_staff_allowed if {
	restaurant.allow with input as {"user": {"groups": ["staff", "other"]}}
}

test_marketing_denied_with_reason if {
	not restaurant.allow with input as {"user": {"groups": ["marketing"]}}
	restaurant.reason == "not_in_group" with input as {"user": {"groups": ["marketing"]}}
}

test_kitchen_gets_role_header if {
	restaurant.headers["X-Restaurant-Role"] == "kitchen" with input as {"user": {"groups": ["kitchen"]}}
}

test_no_user_denied if {
	not restaurant.allow with input as {"user": null}
}
