package orchestrator

import (
	"context"
	"time"

	"github.com/sluicehq/sluice/orchestrator/audit"
)

// RetentionInterval is how often the orchestrator checks the audit log
// against audit.max_age and audit.max_size, besides once at start.
const RetentionInterval = time.Minute

// retainAudit drops the head of the audit log that the configuration in
// force says not to keep (audit.Log.Retain): once now, then every
// RetentionInterval until Close. A reload's limits apply from the next
// check. A failure is logged and tried again at the next check: it loses
// nothing, the log only stays longer.
func (o *Orchestrator) retainAudit(ctx context.Context) {
	o.retainOnce(ctx)
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		t := time.NewTicker(RetentionInterval)
		defer t.Stop()
		for {
			select {
			case <-o.stopViolations:
				return
			case <-t.C:
				o.retainOnce(context.Background())
			}
		}
	}()
}

func (o *Orchestrator) retainOnce(ctx context.Context) {
	a := o.current.Load().Deployment.Audit
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	d, err := o.audit.Retain(ctx, audit.Retention{MaxAge: a.MaxAge, MaxSize: a.MaxSize}, time.Now())
	if err != nil {
		o.log.Error("audit retention", "err", err)
		return
	}
	if d.Records > 0 {
		o.log.Info("audit records dropped", "records", d.Records, "checkpoint", d.Checkpoint, "reason", d.Reason)
	}
}
