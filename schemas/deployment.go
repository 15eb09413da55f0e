package schemas

import "strings"

// DefaultDeployment is the name of a deployment whose sluice.yaml names
// none: its subjects start with DefaultPrefix and its streams and buckets
// keep their unprefixed names (SLUICE_AUDIT, SLUICE_RUNS, …).
const DefaultDeployment = "sluice"

// StoreName is the name of the JetStream stream or key-value bucket kind
// (AUDIT, RUNS, STEPS, APPROVALS, REMEMBERED, CAPS) of a deployment:
// SLUICE_<KIND> for the default deployment (and ""), SLUICE_<NAME>_<KIND>
// for any other. A deployment's name is lowercase letters, digits and
// hyphens, and a kind holds no underscore, so two deployments never share
// a name.
func StoreName(deployment, kind string) string {
	if deployment == "" || deployment == DefaultDeployment {
		return "SLUICE_" + kind
	}
	return "SLUICE_" + strings.ToUpper(deployment) + "_" + kind
}
