# The service both gateway benchmarks run (sourced by gateway_bench.sh
# and gateway_cost.sh, so that the instructions counted are those of the
# service timed): one route POST /orders with the order's validation
# rules, the embedded engine with sync=normal, a consumer that drops what
# it takes.

# write_config FILE DATA_DIR EXTRA_GATEWAY_LINES
write_config() {
    cat >"$1" <<EOF
service:
  name: ${SERVICE_NAME:-gwbench}
engine:
  url: embedded:$2
  sync: normal
producer:
  max_in_flight: 10000
channels:
  - {name: orders.created, max_length: 1000000}
gateway:
  listen: 127.0.0.1:0
$3
  routes:
    - path: /orders
      channel: orders.created
      type: order.created
      source: /orders
      fields:
        - {name: sku, type: string, required: true, min_length: 1, max_length: 64}
        - {name: qty, type: integer, required: true, minimum: 1, maximum: 100}
        - {name: amount, type: number, required: true, minimum: 0.01}
        - {name: customer, type: string, required: true, min_length: 1, max_length: 128}
admin:
  enabled: false
consumers:
  - channel: orders.created
    group: sink
    prefetch: 1000
    concurrency: 1
    handler: {kind: append, file: /dev/null}
EOF
}
