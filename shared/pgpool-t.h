/* pgpool-t.h — the types of pgpool.h (a bounded, thread-safe pool of pg_conn), apart from the
 * functions so a struct can embed a pool without pulling in the whole API. */
#ifndef ML_PGPOOL_T_H
#define ML_PGPOOL_T_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pg.h"

struct metric;
struct metrics_registry;

/* What pgpool_acquire (and pgpool_close) report. PGPOOL_OK is 0; every other value is a
 * distinct failure a caller can tell apart (e.g. answer 503 on PGPOOL_TIMEOUT). */
typedef enum pgpool_status {
    PGPOOL_OK = 0,
    PGPOOL_TIMEOUT,        /* every connection stayed checked out until the timeout */
    PGPOOL_STOPPED,        /* the pool is stopped, or was never started (zeroed) */
    PGPOOL_CONNECT_FAILED, /* a new connection could not be opened (pgpool_error says why) */
    PGPOOL_NOMEM,          /* out of memory */
} pgpool_status;

/* Options; a zeroed struct (or NULL) means all defaults. */
typedef struct pgpool_options {
    int size;               /* most connections open at once, checked out + idle; 0: 8 */
    int idle_check_ms;      /* an idle connection older than this gets a round trip
                             * (SELECT 1) before it is handed out; 0: 30000; <0: never */
    int idle_close_ms;      /* an idle connection older than this is closed; 0: 300000;
                             * <0: never */
    pg_options pg;          /* for each connection (pg_new); strings are copied by pg_new */
    /* Optional metrics: the gauge minilambda_pgpool_connections{pool,state="in_use"|"idle"},
     * the counters minilambda_pgpool_acquire_timeouts_total{pool} and
     * minilambda_pgpool_discarded_total{pool}. NULL: none. The registry must outlive the pool. */
    struct metrics_registry *metrics;
    const char *name;       /* the pool label (and log name); NULL: "postgres"; copied */
} pgpool_options;

typedef enum pgpool_slot_state {
    PGPOOL_SLOT_FREE = 0,   /* no connection */
    PGPOOL_SLOT_OPENING,    /* reserved while a connection is being opened (counts) */
    PGPOOL_SLOT_IDLE,       /* connected, waiting in the pool */
    PGPOOL_SLOT_BUSY,       /* checked out by a caller, or being checked by the pool */
    PGPOOL_SLOT_CLOSING,    /* being closed outside the lock (still counts toward size) */
} pgpool_slot_state;

typedef struct pgpool_slot {
    pg_conn *conn;
    pgpool_slot_state state;
    int64_t idle_since_ms;  /* ml_now_ms() when it was last released (or opened) */
} pgpool_slot;

/* A pool. A zeroed struct is a valid, empty, stopped pool: pgpool_acquire answers
 * PGPOOL_STOPPED and pgpool_close does nothing. pgpool_start makes it usable. Fields are
 * private (guarded by mu once started). */
typedef struct pgpool {
    bool started;           /* mu/cv exist; set by pgpool_start, cleared by pgpool_close */
    bool stopping;          /* pgpool_stop ran: no more acquisitions */
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* a slot became idle/free, or the pool stopped */
    char *url;
    pgpool_options opts;    /* defaults filled in; name points at name_buf */
    char name_buf[64];
    char app_buf[64];       /* the copied pg.application_name */
    pgpool_slot *slots;     /* opts.size entries */
    int busy;               /* slots BUSY (the in-use gauge) */
    int idle;               /* slots IDLE (the idle gauge) */
    int waiters;            /* threads waiting in pgpool_acquire */
    uint64_t timeouts, discarded, opened; /* totals, for tests and logs */
    char err[256];          /* last connect failure */
    struct metric *m_conns, *m_timeouts, *m_discarded;
} pgpool;

/* A snapshot of a pool (pgpool_stats). */
typedef struct pgpool_stats {
    int size;               /* the bound */
    int in_use;             /* checked out (or being health-checked) */
    int idle;               /* connected and waiting */
    int opening, closing;   /* being opened / closed right now (they count toward size) */
    int waiters;            /* threads blocked in pgpool_acquire */
    uint64_t opened;        /* connections opened so far */
    uint64_t discarded;     /* broken connections thrown away (not the idle-expired ones) */
    uint64_t timeouts;      /* acquisitions that ended in PGPOOL_TIMEOUT */
} pgpool_stats;

#endif
