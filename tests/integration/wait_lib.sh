# Sourced by the integration tests: the one way they wait for a condition.

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
