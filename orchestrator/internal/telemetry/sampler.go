package telemetry

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"go.opentelemetry.io/otel/trace"
)

// sampler decides whether a span records (and is exported): given its
// parent's span context (invalid for a root) and its trace id.
type sampler func(parent trace.SpanContext, id trace.TraceID) bool

// alwaysOn and parentBased are the two samplers the default,
// parentbased_always_on, is made of.
func alwaysOn(trace.SpanContext, trace.TraceID) bool { return true }

// parentBased follows a parent's decision, local or remote, and leaves a
// root's to root.
func parentBased(root sampler) sampler {
	return func(parent trace.SpanContext, id trace.TraceID) bool {
		if parent.IsValid() {
			return parent.IsSampled()
		}
		return root(parent, id)
	}
}

// ratio samples the fraction of traces its id says, as OpenTelemetry's
// TraceIDRatioBased does: the same traces whichever process decides.
func ratio(fraction float64) sampler {
	if fraction >= 1 {
		return alwaysOn
	}
	bound := uint64(max(fraction, 0) * (1 << 63))
	return func(_ trace.SpanContext, id trace.TraceID) bool {
		return binary.BigEndian.Uint64(id[8:16])>>1 < bound
	}
}

// readSampler reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG as the
// OpenTelemetry specification names them; unset is parentbased_always_on.
// A sampler it does not know (jaeger_remote, xray: they need a service of
// their own), or a ratio that is not a number from 0 to 1, is refused.
func readSampler(getenv func(string) string) (sampler, error) {
	name := getenv("OTEL_TRACES_SAMPLER")
	var fraction float64 = 1
	if name == "traceidratio" || name == "parentbased_traceidratio" {
		if arg := getenv("OTEL_TRACES_SAMPLER_ARG"); arg != "" {
			f, err := strconv.ParseFloat(arg, 64)
			if err != nil || f < 0 || f > 1 {
				return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%s: want a number from 0 to 1, the fraction of traces sampled", arg)
			}
			fraction = f
		}
	}
	never := func(trace.SpanContext, trace.TraceID) bool { return false }
	switch name {
	case "", "parentbased_always_on":
		return parentBased(alwaysOn), nil
	case "always_on":
		return alwaysOn, nil
	case "always_off":
		return never, nil
	case "parentbased_always_off":
		return parentBased(never), nil
	case "traceidratio":
		return ratio(fraction), nil
	case "parentbased_traceidratio":
		return parentBased(ratio(fraction)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%s: want always_on, always_off, traceidratio or one of them after parentbased_", name)
}
