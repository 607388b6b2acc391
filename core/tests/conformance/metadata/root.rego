# METADATA
# scope: subpackages
# title: Company policies
# organizations: [Acme]
package acme

import rego.v1

# METADATA
# title: Root rule
root := rego.metadata.chain()
