package engine

import "github.com/sluicehq/sluice/orchestrator/runstore"

// The buckets of the run state (runstore).
const (
	RunsBucket      = runstore.RunsBucket
	StepsBucket     = runstore.StepsBucket
	ApprovalsBucket = runstore.ApprovalsBucket
)
