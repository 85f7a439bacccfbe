/* audit_queue.c — the bounded in-memory queue between audit_submit and the writer: runs are
 * taken off its head, written, spilled or put back. */
#include <stdlib.h>
#include <string.h>

#include "audit-int.h"

#define BATCH_BYTES_MAX (8u << 20) /* a batch stops growing past this (rows can be 8 MiB) */

void audit_list_push(item_list *l, audit_item *it)
{
    it->next = NULL;
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    l->n++;
    l->bytes += it->len;
}

void audit_list_free(item_list *l)
{
    while (l->head) {
        audit_item *it = l->head;
        l->head = it->next;
        free(it->line);
        free(it);
    }
    memset(l, 0, sizeof(*l));
}

/* Takes up to max_rows (and about BATCH_BYTES_MAX) from the queue's head. Caller holds lock. */
void audit_queue_take(audit *a, size_t max_rows, item_list *out)
{
    memset(out, 0, sizeof(*out));
    if (a->q.bytes > a->trim_peak)
        a->trim_peak = a->q.bytes;
    while (a->q.head && out->n < max_rows && (out->n == 0 || out->bytes + a->q.head->len <= BATCH_BYTES_MAX)) {
        audit_item *it = a->q.head;
        a->q.head = it->next;
        if (!a->q.head)
            a->q.tail = NULL;
        a->q.n--;
        a->q.bytes -= it->len;
        audit_list_push(out, it);
    }
    a->inflight += out->n;
}

/* Puts a taken run back at the head (it is older than everything queued since). */
void audit_queue_return(audit *a, item_list *l)
{
    if (!l->head)
        return;
    pthread_mutex_lock(&a->lock);
    l->tail->next = a->q.head;
    if (!a->q.head)
        a->q.tail = l->tail;
    a->q.head = l->head;
    a->q.n += l->n;
    a->q.bytes += l->bytes;
    a->inflight -= l->n;
    pthread_mutex_unlock(&a->lock);
    memset(l, 0, sizeof(*l));
}

/* Frees a taken run once it is written, spilled or dropped, making room for submitters. */
void audit_list_settle(audit *a, item_list *l)
{
    pthread_mutex_lock(&a->lock);
    a->inflight -= l->n;
    pthread_cond_broadcast(&a->space);
    pthread_mutex_unlock(&a->lock);
    audit_list_free(l);
}

bool audit_queue_full(const audit *a, size_t len)
{
    return a->q.n + a->inflight >= (size_t)a->cfg.queue_max_rows ||
           a->q.bytes + len > (size_t)a->cfg.queue_max_mb * 1024 * 1024;
}

/* Past this much in memory while Postgres is down, the oldest rows go to the spill file. */
bool audit_queue_over_hold(const audit *a)
{
    return a->q.n > (size_t)a->cfg.hold_rows || a->q.bytes > (size_t)a->cfg.queue_max_mb * 512 * 1024;
}
