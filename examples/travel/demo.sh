#!/usr/bin/env bash
# The travel demo: run by `make demo` from the repository root, after the
# binaries are built into bin/.
set -uo pipefail
cd "$(dirname "$0")"
root=../..
sluice=$root/bin/sluice
site=$root/bin/travel-site

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

"$site" --addr 127.0.0.1:8088 2>/dev/null &
site_pid=$!
trap 'kill $site_pid 2>/dev/null' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/8088) 2>/dev/null && break
  sleep 0.05
done
if ! kill -0 $site_pid 2>/dev/null; then
  echo "demo: the fake airline site could not listen on 127.0.0.1:8088 (is the port in use?)" >&2
  exit 1
fi
rm -rf .sluice

say "1. Book a flight. The offers, the price and the account to pay come from a web page."
"$sluice" run book.yaml --input destination=Lisbon --input budget=400 --wait=false
code=$?
say "   exit code $code: the payment is held for a person, and nothing was charged."
echo "   Every value read from the page is labeled untrusted, with the page as its source;"
echo "   the rule untrusted-never-pays-alone holds any privileged call such a value decides."
echo "   In real use a person reviews the held call and runs: sluice approve <id>"

say "2. The same, with a page that carries a prompt injection and a model that obeys it."
"$sluice" run book.yaml --config sluice-hijackable.yaml --input destination=Lisbon --input budget=400 --input page=deals --wait=false
code=$?
say "   exit code $code: the hijacked model chose the attacker's account, and the payment is held just the same."
echo "   The person asked to approve sees that the payee came from web:127.0.0.1:8088."

say "3. Pay an amount you name yourself: every argument is yours, so nothing is held."
"$sluice" run pay-direct.yaml --input amount=120 --input payee=acct_hotel_1 --input memo="Hotel Lisboa"
code=$?
say "   exit code $code. The ledger now holds exactly one charge:"
cat .sluice/payment/ledger.jsonl
