#!/usr/bin/env bash
# The main job: bring up RabbitMQ + Redis, a scheduler and two workers, and run
# the dask futures notebook three times: through the Rust client (cell by
# cell), through the `warren` CLI, and as the real .ipynb in Jupyter (headless)
# from Python, on two Python workers. Leaves nothing running behind it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash broker-config/up.sh
echo "== building (release; the first build takes several minutes)"
cargo build --release --bins --examples
bin=target/release
export WARREN_NAMESPACE="${WARREN_NAMESPACE:-notebook}"
# The stack is started here, so Client() must connect to it and never start
# a local cluster of its own (which it does when no scheduler answers yet).
export WARREN_AMQP_URL="${WARREN_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
logs=.warren-run
mkdir -p "$logs"
# The namespace key: every process of the run holds it, so every message is
# signed and checked, and the notebook's functions (defined in its cells)
# travel as signed code to the Python workers.
[ -f "$logs/namespace.key" ] || "$bin/warren" key new --file "$logs/namespace.key"
export WARREN_KEY_FILE="$PWD/$logs/namespace.key"

# The namespace's RabbitMQ policies (dead-lettering; on quorum queues also the
# delivery-limit backstop), so the management UI shows them beside its queues.
# RabbitMQ's own user reads the file, by absolute path.
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
"$bin/warren-scheduler" --print-definitions >"$logs/definitions.json"
if out="$($sudo rabbitmqctl -q import_definitions "$PWD/$logs/definitions.json" 2>&1)"; then
  echo "== applied the RabbitMQ policies of namespace $WARREN_NAMESPACE ($logs/definitions.json)"
else
  echo "== warning: could not import $logs/definitions.json (the run goes on without policies): $out" >&2
fi

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

"$bin/warren-scheduler" >"$logs/scheduler.log" 2>&1 & pids+=($!)
"$bin/warren-worker" --concurrency 1 >"$logs/worker-1.log" 2>&1 & pids+=($!)
"$bin/warren-worker" --concurrency 1 >"$logs/worker-2.log" 2>&1 & pids+=($!)
echo "== scheduler and 2 workers on namespace $WARREN_NAMESPACE (logs in $logs/)"
# Start from a clean slate, as a fresh notebook kernel would.
"$bin/warren" restart >/dev/null

echo
echo "######## the notebook through the Rust client (client-cli/examples/notebook.rs)"
"$bin/examples/notebook"

echo
echo "######## the notebook through the warren CLI"
w="$bin/warren"
start=$(date +%s.%N)
run() { echo "\$ warren $*" >&2; "$w" "$@"; }
N=$(run submit count_primes_less_than 5000000); echo "$N"
run status "$N"
run result "$N"
M=$(run submit count_primes_less_than 5000001)
run result "$M"
run map count_primes_less_than $(seq 3000001 3000009) > "$logs/futures"
run status - < "$logs/futures"
echo "# distributed_test()" >&2
run map count_primes_less_than $(seq 1500000 1500008) | run gather -
M1=$(run submit count_primes_less_than 4000000)
M2=$(run submit count_primes_less_than 4500000)
Msum=$(run submit add_them "@$M1" "@$M2")
run result "$Msum"
M3=$(run submit count_primes_less_than 4000003); M4=$(run submit count_primes_less_than 4500004)
M5=$(run submit count_primes_less_than 4000005); M6=$(run submit count_primes_less_than 4500006)
M7=$(run submit count_primes_less_than 4000007); M8=$(run submit count_primes_less_than 4500008)
Msum1=$(run submit add_them "@$M3" "@$M4"); Msum2=$(run submit add_them "@$M5" "@$M6")
Msum3=$(run submit add_them "@$M7" "@$M8")
Msum4=$(run submit add_them "@$Msum1" "@$Msum2"); Msum5=$(run submit add_them "@$Msum4" "@$Msum3")
Msum6=$(run submit add_them "@$M3" "@$Msum3")
run result "$Msum5"
run result "$Msum6"
N=$(run submit goes_wrong)
run result "$N" || echo "(exit $? — the task's error, as N.result() raises in the notebook)"
run status "$N"
run restart
run status "$Msum5"
end=$(date +%s.%N)
printf '\nthe CLI notebook took %.1f s\n' "$(echo "$end - $start" | bc 2>/dev/null || python3 -c "print($end - $start)")"

echo
echo "######## the notebook in Jupyter, in Python, on Python workers (python/examples/dask-futures-notebook.ipynb)"
bash scripts/python-env.sh --test
# The Rust workers make room on the cores for the two Python workers.
kill "${pids[1]}" "${pids[2]}" 2>/dev/null || true
export PYTHONPATH="$PWD/python/examples"
# The notebook defines its functions in its cells: they travel as code,
# signed with the namespace key (WARREN_KEY_FILE, above).
.venv/bin/python3 -m warren worker --accept-code --concurrency 1 >"$logs/py-worker-1.log" 2>&1 & pids+=($!)
.venv/bin/python3 -m warren worker --accept-code --concurrency 1 >"$logs/py-worker-2.log" 2>&1 & pids+=($!)
start=$(date +%s.%N)
.venv/bin/python3 python/examples/run_notebook.py "$logs/dask-futures-notebook.executed.ipynb"
end=$(date +%s.%N)
printf '\nthe Jupyter notebook took %.1f s (executed copy: %s)\n' "$(python3 -c "print($end - $start)")" "$logs/dask-futures-notebook.executed.ipynb"
