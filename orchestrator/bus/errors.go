package bus

import "errors"

// ErrCredentials means the account seed or the orchestrator's own
// credentials for an external server are unusable, or the server refuses
// users signed with that seed.
var ErrCredentials = errors.New("external nats credentials")
