package routes.tenant_apps_test

import rego.v1

import data.routes.tenant_apps

member_of_acme := {"route": {"tenant": "acme"}, "user": {"tenants": {"acme": "admin"}}}

member_of_globex := {"route": {"tenant": "acme"}, "user": {"tenants": {"globex": "member"}}}

test_member_allowed_with_tenant_headers if {
	tenant_apps.allow with input as member_of_acme
	tenant_apps.headers == {"X-Tenant-Id": "acme", "X-Tenant-Role": "admin"} with input as member_of_acme
}

test_other_tenant_denied if {
	not tenant_apps.allow with input as member_of_globex
	tenant_apps.reason == "not_a_tenant_member" with input as member_of_globex
}

test_no_tenants_denied if {
	not tenant_apps.allow with input as {"route": {"tenant": "acme"}, "user": {"groups": []}}
}
