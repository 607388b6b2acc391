# {tenant}.apps.example.com: only members of that tenant. The answer carries the tenant id
# so the ingress can route to the tenant's backend (auth_request_set $tenant $upstream_http_x_tenant_id).
package routes.tenant_apps

import rego.v1

default allow := false

tenant := input.route.tenant

role := input.user.tenants[tenant]

allow if role

reason := "not_a_tenant_member" if not allow

headers := {"X-Tenant-Id": tenant, "X-Tenant-Role": role} if allow
