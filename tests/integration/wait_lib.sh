# Sourced by the integration tests: the one way they wait for a condition,
# and free loopback ports.

# wait_for SECONDS CONDITION-COMMAND...: true once the command succeeds,
# false after SECONDS (checked every 50 ms). Its variables are prefixed so
# that it leaves the caller's alone.
wait_for() {
    wf_s=$1
    shift
    wf_i=0
    while ! "$@"; do
        wf_i=$((wf_i + 1))
        [ "$wf_i" -le $((wf_s * 20)) ] || return 1
        sleep 0.05
    done
}

# True once something listens on TCP port $1 (asks the kernel).
listening() {
    port_hex=$(printf '%04X' "$1")
    grep -q ":$port_hex 00000000:0000 0A" /proc/net/tcp 2>/dev/null
}

# A loopback port nobody listens on, in 20000-29999.
free_port() {
    while :; do
        p=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 10000))
        if ! listening "$p"; then
            echo "$p"
            return 0
        fi
    done
}
