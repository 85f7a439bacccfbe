/* sweeper.h — finishes builds whose job publish was never confirmed (the process died
 * between inserting the build and the broker's confirm). */
#ifndef BM_SWEEPER_H
#define BM_SWEEPER_H

#include "app.h"

/* Republishes every queued, unpublished build older than app->sweep_after_s; returns how
 * many were published, or -1 on error. */
int sweeper_run_once(bm_app *app, deps *d);
/* Thread body: sweeps every few seconds until svc_stopping(). arg: bm_app *. */
void *sweeper_main(void *arg);

#endif
