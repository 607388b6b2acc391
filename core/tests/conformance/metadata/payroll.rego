# METADATA
# title: Payroll
# description: Who may see pay slips.
# related_resources:
# - https://wiki.example.com/payroll
# - ref: https://runbooks.example.com/payroll
#   description: runbook
# custom:
#   severity: high
#   owners: [ann, bob]
package acme.apps.payroll

import rego.v1

default allow := false

# METADATA
# scope: document
# title: Allow
# description: Decides payroll requests.

# METADATA
# title: Managers
# authors:
# - Ann Lee <ann@example.com>
# - name: Bob
#   email: bob@example.com
# - carol
# schemas:
# - input: {"type": "object"}
allow if {
	"managers" in input.groups
	rego.metadata.rule().title == "Managers"
}

# METADATA
# title: Payroll team
# custom:
#   severity: low
allow if {
	"payroll" in input.groups
}

severity := rego.metadata.chain()[1].annotations.custom.severity if true

chain_of_allow := [rego.metadata.rule(), rego.metadata.chain()]

reasons contains rego.metadata.rule().title if true

# METADATA
# title: Labels
labels[name] := rego.metadata.chain() if some name in ["a"]

# METADATA
# title: A function
explain(x) := {"x": x, "why": rego.metadata.rule()}

explained := explain(1)

fallback := rego.metadata.rule() if false
else := rego.metadata.chain()

# METADATA
# entrypoint: true
# description: Entry point
decision := {"allow": allow, "chain": rego.metadata.chain()}

# METADATA
# title: Not YAML? # only a comment
quoted := "rego.metadata.chain()"
