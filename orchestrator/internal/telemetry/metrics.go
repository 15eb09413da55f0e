package telemetry

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Registry holds every metric the orchestrator exports; the web page
// serves it on /metrics.
var Registry = prometheus.NewRegistry()

// Buckets of the latency histograms, in seconds: from a hop on the bus
// (under a millisecond) to a call that waits for a model (a minute).
var latency = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Buckets of the approval latency, in seconds: a person answers in
// seconds, minutes or hours.
var approvalBuckets = []float64{1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600}

var (
	decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_decisions_total",
		Help: "Policy decisions recorded, by tool, decision (allow, deny, approve) and rule (one count per rule that decided; \"\" when none did).",
	}, []string{"tool", "decision", "rule"})
	calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_calls_total",
		Help: "Calls through the policy gate, by tool and outcome (completed, denied, held, failed).",
	}, []string{"tool", "outcome"})
	callSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sluice_call_duration_seconds",
		Help:    "Time a call spent in the policy gate, decision to labeled output, by tool and outcome.",
		Buckets: latency,
	}, []string{"tool", "outcome"})
	stepSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sluice_step_duration_seconds",
		Help:    "Time a flow step took, by tool and status.",
		Buckets: latency,
	}, []string{"tool", "status"})
	approvalSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sluice_approval_latency_seconds",
		Help:    "Time from a call being held to a person's answer.",
		Buckets: approvalBuckets,
	})
	egressRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_egress_requests_total",
		Help: "Requests of workers through the egress broker, by host (host:port; \"\" for a refused request, whose host the worker chose) and outcome (performed, refused).",
	}, []string{"host", "outcome"})
	auditSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sluice_audit_append_duration_seconds",
		Help:    "Time from handing an audit record to the stream to its acknowledgement.",
		Buckets: latency,
	})
	auditRecords = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_audit_records_total",
		Help: "Audit records handed to the stream, by kind.",
	}, []string{"kind"})
	restarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_worker_restarts_total",
		Help: "Worker processes that exited and were started again, by worker.",
	}, []string{"worker"})
	violations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_violations_total",
		Help: "Violations recorded in the audit log, by op: what the bus refused a worker (publish, subscribe, ...), secret, label.",
	}, []string{"op"})
	// HeldCalls is set by the web page at each scrape from the store of
	// held calls.
	HeldCalls = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_held_calls",
		Help: "Held calls waiting for a person's answer.",
	})
)

func init() {
	Registry.MustRegister(decisions, calls, callSeconds, stepSeconds, approvalSeconds, egressRequests,
		auditSeconds, auditRecords, restarts, violations, HeldCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// Decision counts a policy decision on tool, once per rule behind it.
func Decision(tool, decision string, rules []string) {
	if len(rules) == 0 {
		decisions.WithLabelValues(tool, decision, "").Inc()
		return
	}
	for _, r := range rules {
		decisions.WithLabelValues(tool, decision, r).Inc()
	}
}

// Call counts a call through the gate and its time there.
func Call(tool, outcome string, d time.Duration) {
	calls.WithLabelValues(tool, outcome).Inc()
	callSeconds.WithLabelValues(tool, outcome).Observe(d.Seconds())
}

// Step records the time a step took.
func Step(tool, status string, d time.Duration) {
	stepSeconds.WithLabelValues(tool, status).Observe(d.Seconds())
}

// Approval records the time a person took to answer a held call.
func Approval(d time.Duration) { approvalSeconds.Observe(d.Seconds()) }

// Egress counts a request through the broker. A refused request is
// counted without its host: the worker chose it, and a label per host
// would let a worker grow the metrics without bound.
func Egress(host string, refused bool) {
	if refused {
		egressRequests.WithLabelValues("", "refused").Inc()
		return
	}
	egressRequests.WithLabelValues(host, "performed").Inc()
}

// AuditAppend records the time the stream took to store a record.
func AuditAppend(d time.Duration) { auditSeconds.Observe(d.Seconds()) }

// AuditRecord counts a record handed to the stream, and a violation.
func AuditRecord(kind, op string) {
	auditRecords.WithLabelValues(kind).Inc()
	if kind == "violation" {
		if op == "" {
			op = "other"
		}
		violations.WithLabelValues(strings.ToLower(op)).Inc()
	}
}

// WorkerRestart counts a worker process started again.
func WorkerRestart(worker string) { restarts.WithLabelValues(worker).Inc() }
