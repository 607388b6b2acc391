package acme.apps.payroll.reports

import rego.v1

bare := rego.metadata.chain()

bare_rule := rego.metadata.rule()
