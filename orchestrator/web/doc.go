// Package web serves the local web page of a running orchestrator: the
// runs, each run as a graph of its steps coloured by integrity and marked
// with its secrecy, and the queue of held calls, each with its exact
// arguments, the label and sources of each argument, the rules that held
// it, and Approve and Deny buttons.
//
// Everything the page needs (templates, one style sheet, one small script)
// is embedded in the binary; the page loads nothing from anywhere else.
//
// # Who can use the page
//
// The server listens on a loopback address only ([New] refuses any other),
// and a loopback port is open to every user of the machine. So the page
// asks for a key: a random value in the address [Server.URL] returns
// (sluice up prints it and writes it to <state>/run/web.url, mode 0600),
// which the page trades for a cookie (HttpOnly, SameSite=Strict) and drops
// from the address bar. Whoever cannot read the state directory cannot
// read the page or answer a held call, as with sluice approve.
//
// # Forged requests
//
// Every request must name the served address in its Host header, which
// defeats DNS rebinding (a site whose name resolves to 127.0.0.1 still
// sends its own name). Every answer (a POST) must also come from the page
// itself: its Origin must be the served address, and it must carry the
// per-server token embedded in the page. The cookie is SameSite=Strict, so
// a request another site starts carries no key in the first place.
//
// # Why the graph follows labels
//
// The audit log records what each step's arguments carried, not the flow
// file, so the graph draws an arrow from a step to a later one whose
// arguments carry its tool's output (the tool:NAME source of the label):
// the path information took. Arrows implied by others are left out.
package web
