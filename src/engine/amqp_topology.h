/* The RabbitMQ engine's words for a topology conflict.
 *
 * RabbitMQ refuses to declare an existing exchange or queue with other
 * arguments (406 PRECONDITION_FAILED) and cannot tell a client what the
 * existing one has (AMQP 0-9-1 returns no arguments; the management API is
 * a plugin). Its refusal names the argument and both values, e.g.
 *
 *   PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q' in
 *   vhost '/': received the value '5000' of type 'long' but current is the
 *   value '1000' of type 'long'
 *
 * which this module rephrases in sluice's terms. No rabbitmq-c here: the
 * unit tests need no broker. Internal.
 */
#ifndef SLUICE_ENGINE_AMQP_TOPOLOGY_H
#define SLUICE_ENGINE_AMQP_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Rephrase the broker's refusal @p text (@p len bytes, not NUL-terminated)
 * into @p out (@p size bytes, always NUL-terminated), e.g.
 *
 *   queue 'q': x-max-length (the channel's max_length) is 1000 on the
 *   broker, the configuration wants 5000; RabbitMQ cannot change an
 *   existing queue: delete it (its messages too) or change the
 *   configuration
 *
 * @return true when @p text has that form; false (and @p out untouched)
 *         otherwise. Thread: any.
 */
bool sl__amqp_describe_difference(const char *text, size_t len, char *out,
                                  size_t size);

#endif
