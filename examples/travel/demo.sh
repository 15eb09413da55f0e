#!/usr/bin/env bash
# The travel demo: run by `make demo` from the repository root, after the
# binaries are built into bin/. It takes a few seconds, and stops everything
# it started, whatever happens.
#
# The fake airline site listens on 127.0.0.1:$DEMO_PORT (default 8088; 0
# picks a free port). The demo runs in examples/travel/.demo, a copy of
# the example's files that names the site's port, and keeps its state
# there (.demo/.sluice) until the next demo starts: a demo that cannot
# start leaves the previous one's state as it was.
set -uo pipefail
cd "$(dirname "$0")"
port=${DEMO_PORT:-8088}
root=../../..
sluice=$root/bin/sluice
site=$root/bin/travel-site
tmp=$(mktemp -d)
pids=()

bold='' plain=''
if [ -t 1 ]; then
	bold=$'\033[1m' plain=$'\033[0m'
fi
say() { printf '\n%s%s%s\n' "$bold" "$*" "$plain"; }
note() { printf '   %s\n' "$@"; }
fail() {
	printf '\ndemo: %s\n' "$*" >&2
	exit 1
}
cleanup() {
	for p in ${pids[@]+"${pids[@]}"}; do
		kill "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gone() { ! kill -0 "$1" 2>/dev/null; }

# within SECONDS PID COMMAND…: true as soon as COMMAND succeeds, polled
# every 50 ms; false after SECONDS, or as soon as process PID has exited.
within() {
	local tries=$(($1 * 20)) pid=$2
	shift 2
	for _ in $(seq "$tries"); do
		"$@" && return 0
		gone "$pid" && return 1
		sleep 0.05
	done
	return 1
}

# finish PID SECONDS: waits for a background process and sets code to its
# exit code.
finish() {
	for _ in $(seq $(($2 * 20))); do
		gone "$1" && break
		sleep 0.05
	done
	gone "$1" || fail "process $1 did not finish within $2s"
	wait "$1"
	code=$?
}

# The held call, as `sluice approvals --json` lists it: sets id.
held() {
	id=$("$sluice" approvals --json 2>/dev/null | grep -m 1 -o '"id": *"[0-9A-Z]\{26\}"' | grep -o '[0-9A-Z]\{26\}')
	[ -n "$id" ]
}

case $port in
'' | *[!0-9]*) fail "DEMO_PORT=$port: want a port number (0: any free port)" ;;
esac
mkdir -p .demo
cd .demo
if [ -f .sluice/run/api.json ]; then
	pid=$(grep -o '"pid": *[0-9]*' .sluice/run/api.json | grep -o '[0-9]*$')
	if [ -n "$pid" ] && ! gone "$pid"; then
		fail "sluice (pid $pid) is running on examples/travel/.demo/.sluice; stop it first"
	fi
fi

# The site first: the previous demo's state is removed only once this
# demo can run.
"$site" --addr "127.0.0.1:$port" 2>"$tmp/site.log" &
site_pid=$!
pids+=("$site_pid")
if ! within 5 "$site_pid" grep -q 'serving http://' "$tmp/site.log"; then
	cat "$tmp/site.log" >&2
	fail "the fake airline site could not listen on 127.0.0.1:$port (is the port in use? make demo DEMO_PORT=8089 picks another, DEMO_PORT=0 any free one); the previous demo's state is kept"
fi
addr=$(grep -o -m 1 'serving http://127\.0\.0\.1:[0-9]*' "$tmp/site.log" | grep -o '127\.0\.0\.1:[0-9]*$')
rm -rf .sluice
for f in ../*.yaml ../calendar.ics; do
	sed "s/127\.0\.0\.1:8088/$addr/g" "$f" >"$(basename "$f")"
done

say "1. Book a trip with three agents: one browses, one reads the calendar, one pays."
note "The orchestrator runs in the background (sluice up), as it would in real use,"
note "and the run is submitted to it."
"$sluice" up -q 2>"$tmp/up.log" &
up=$!
pids+=("$up")
if ! within 20 "$up" test -f .sluice/run/api.json; then
	cat "$tmp/up.log" >&2
	fail "sluice up did not start"
fi
"$sluice" run book-agents.yaml --input destination=Lisbon --input budget=400 --wait-timeout 60s \
	>"$tmp/run.out" 2>"$tmp/run.err" &
run=$!
pids+=("$run")
if ! within 20 "$run" held; then
	cat "$tmp/run.out" "$tmp/run.err" >&2
	fail "the run did not stop at the payment"
fi
say "   The payment is held for a person. sluice approvals shows what would be sent, and"
note "where each argument came from:"
"$sluice" approvals | sed '/./s/^/   /'
if [ -f .sluice/run/web.url ]; then
	note "The same call waits on the web page of sluice up, with Approve and Deny buttons:"
	note "$(cat .sluice/run/web.url)"
fi
echo
note "The research agent fetched the offers page on web:$addr. It never read the"
note "page: the model got a handle, and two facts through inspect (which of three accounts"
note "to pay, and a price within the budget). Those answers keep the page's label, so the"
note "payment agent's context is untrusted, and policy holds the call: nothing is charged."
say "   In real use a person reviews exactly this call, then approves or denies it."
note "The demo approves it for you:"
note "\$ sluice approve $id"
"$sluice" approve "$id" >"$tmp/approve.out" || fail "sluice approve $id failed"
sed -n '1s/^/   /p' "$tmp/approve.out"
finish "$run" 30
cat "$tmp/run.out"
if [ "$code" -ne 0 ]; then
	cat "$tmp/run.err" >&2
	fail "the approved run ended with exit code $code, want 0"
fi
kill -INT "$up"
finish "$up" 30
say "   exit code 0: the approved call went through, and the ledger holds one charge:"
cat .sluice/payment/ledger.jsonl

say "2. The same trip, with a page that carries a prompt injection and a model that obeys any."
"$sluice" run book-agents.yaml --config sluice-hijackable.yaml --input destination=Lisbon --input budget=400 \
	--input page=deals --wait=false 2>"$tmp/run.err"
code=$?
if [ "$code" -ne 0 ]; then
	cat "$tmp/run.err" >&2
	fail "the poisoned run ended with exit code $code, want 0"
fi
chat=$(grep -v '"turn":0' .sluice/model.jsonl | grep -c 'SLUICE-INJECT')
reader=$(grep '"turn":0' .sluice/model.jsonl | grep -c 'SLUICE-INJECT')
say "   exit code 0, and nothing was paid: the attacker's account never reached the payment agent."
note "The page tells the model to pay acct_attacker_7731. The agents' model read that $chat times:"
note "the page reached it only as a handle. The quarantined reader behind inspect read it"
note "$reader times and obeyed, but its answer must be one of three accounts, or a price from"
note "0 to 400, so the answer was refused (llm.extract: failed). The research agent found"
note "nothing it could trust, and the payment agent never ran. A research agent hijacked any"
note "other way could not pay either: it may call web.fetch and nothing else."

say "3. Without agents: book.yaml hands the whole page to the same hijacked model."
"$sluice" run book.yaml --config sluice-hijackable.yaml --input destination=Lisbon --input budget=400 \
	--input page=deals --wait=false 2>"$tmp/run.err"
code=$?
if [ "$code" -ne 4 ]; then
	cat "$tmp/run.err" >&2
	fail "the fixed flow on the poisoned page ended with exit code $code, want 4 (held)"
fi
say "   exit code 4: the model chose the attacker's account, and the payment is held just the same."
note "The person asked to approve sees the payee acct_attacker_7731, from web:$addr."
note "The ledger still holds the one charge of run 1:"
wc -l <.sluice/payment/ledger.jsonl | sed 's/^ */   lines: /'

say "Look around: the demo's state is kept in examples/travel/.demo/.sluice."
note "bin/sluice runs --config examples/travel/.demo/sluice.yaml         # the runs above"
note "bin/sluice approvals --config examples/travel/.demo/sluice.yaml    # run 3's payment, held"
note "bin/sluice up --config examples/travel/.demo/sluice.yaml           # prints its web page's address;"
note "    there, or with bin/sluice deny ID --config examples/travel/.demo/sluice.yaml in another"
note "    terminal, answer run 3's payment (deny it: the payee is the attacker's)"
