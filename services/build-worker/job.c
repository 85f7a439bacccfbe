/* job.c — the build: claim, download, extract safely, check the handler, pack, upload,
 * record. User mistakes fail the build with a message; infrastructure trouble is retried.
 *
 * Idempotency: a build is claimed by a conditional UPDATE (queued → building, or a building
 * build whose worker is gone: the message was redelivered, or it is older than
 * stale_after_s). The final UPDATE only succeeds for the claiming worker, so a duplicate
 * job or a worker that lost its claim changes nothing. */
#include "job.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "artifact.h"
#include "buildlog.h"
#include "install.h"
#include "buildstate.h"
#include "crypto.h"
#include "fnspec-t.h"
#include "log.h"

typedef struct build {
    char id[ML_UUID_LEN], function_id[ML_UUID_LEN];
    char runtime[FNSPEC_RUNTIME_MAX + 1], handler[FNSPEC_HANDLER_MAX + 1], package_key[256];
    char ns[64];       /* the function's namespace (registry overrides) */
    char dir[512], zip[600], tree[600], tgz[600], work[600];
    int64_t started_ms;
    int64_t attempt;
    bool takeover;     /* claimed from another worker's 'building' */
    buildlog log;      /* the build's log lines (docs/logs.md §3) */
} build;

static int parse_job(const mq_message *m, build *b)
{
    cJSON *o = cJSON_ParseWithLength(m->body, m->body_len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "build_id");
    int rc = ML_ERR;

    if (cJSON_IsString(id) && ml_uuid_valid(id->valuestring) == ML_OK) {
        ml_strlcpy(b->id, id->valuestring, sizeof(b->id));
        rc = ML_OK;
    }
    cJSON_Delete(o);
    return rc;
}

/* Claims the build; ML_OK claimed, 1 nothing to do, ML_ERR database trouble. */
static int claim(bw_app *app, deps *d, build *b, bool redelivered)
{
    char stale[24];
    const char *p[] = { b->id, app->worker_id, redelivered ? "true" : "false", stale };
    PGresult *r = NULL;
    int rc = ML_ERR;

    if (ml_snprintf(stale, sizeof(stale), "%lld", (long long)app->stale_after_s) != ML_OK ||
        pg_begin(d->db) != ML_OK)
        return ML_ERR;
    r = pg_query(d->db, "bw_claim",
                 "UPDATE builds b SET status = 'building', started_at = now(),"
                 " attempts = b.attempts + 1, worker_id = $2"
                 " FROM (SELECT id, status FROM builds WHERE id = $1 FOR UPDATE) old"
                 " WHERE b.id = old.id AND (old.status = 'queued' OR (old.status = 'building' AND"
                 " ($3::bool OR b.started_at < now() - make_interval(secs => $4::int))))"
                 " RETURNING b.function_id, b.runtime, b.handler, b.package_key, old.status,"
                 " b.attempts, (SELECT namespace FROM build_functions f WHERE f.id = b.function_id)",
                 4, p);
    if (!r)
        goto out;
    if (PQntuples(r) == 0) {
        rc = 1;
        goto out;
    }
    pg_get_text_copy(r, 0, 0, b->function_id, sizeof(b->function_id));
    pg_get_text_copy(r, 0, 1, b->runtime, sizeof(b->runtime));
    pg_get_text_copy(r, 0, 2, b->handler, sizeof(b->handler));
    pg_get_text_copy(r, 0, 3, b->package_key, sizeof(b->package_key));
    pg_get_int64(r, 0, 5, &b->attempt);
    pg_get_text_copy(r, 0, 6, b->ns, sizeof(b->ns));
    b->takeover = strcmp(pg_get_text(r, 0, 4), "queued") != 0;
    /* a takeover keeps the single 'building' event and webhook of the first claim */
    if (strcmp(pg_get_text(r, 0, 4), "queued") == 0 &&
        buildstate_record(d->db, b->id, "building", NULL, app->executor_url, false) != ML_OK)
        goto out;
    rc = pg_commit(d->db);
out:
    PQclear(r);
    if (rc != ML_OK)
        pg_rollback(d->db);
    return rc;
}

/* Ends the build as failed (a user-facing reason). */
static int finish_failed(bw_app *app, deps *d, build *b, const char *error)
{
    const char *p[] = { b->id, error, app->worker_id };
    int64_t n = 0;

    if (pg_begin(d->db) != ML_OK ||
        pg_exec(d->db, "bw_fail",
                "UPDATE builds SET status = 'failed', error = $2, finished_at = now()"
                " WHERE id = $1 AND status = 'building' AND worker_id = $3",
                3, p, &n) != ML_OK ||
        (n == 1 && buildstate_record(d->db, b->id, "failed", error, app->executor_url, false) != ML_OK) ||
        pg_commit(d->db) != ML_OK) {
        pg_rollback(d->db);
        return ML_ERR;
    }
    metric_inc(app->m_builds, (const char *[]){ "failed" });
    ml_log_kv(ML_LOG_INFO, "build failed", "build_id", b->id, "error", error, NULL);
    if (n == 1)
        buildlog_add(&b->log, "error", "done", "build failed after %lld ms: %s",
                     (long long)(ml_now_ms() - b->started_ms), error);
    return ML_OK;
}

/* Records the manifest rows and completes the build, all or nothing. files_json: the
 * manifest's "files" array. ML_OK, 1 if another worker owns the build now, ML_ERR. */
static int finish_completed(bw_app *app, deps *d, build *b, const char *files_json,
                            const char *prefix, const char *sha, int64_t size, size_t nfiles)
{
    char size_s[24], files_s[24];
    const char *p[] = { b->id, app->worker_id, prefix, sha, size_s, files_s };
    const char *fp[] = { b->id, files_json };
    int64_t n = 0;
    int rc = ML_ERR;

    if (ml_snprintf(size_s, sizeof(size_s), "%lld", (long long)size) != ML_OK ||
        ml_snprintf(files_s, sizeof(files_s), "%zu", nfiles) != ML_OK)
        return ML_ERR;
    if (pg_begin(d->db) != ML_OK ||
        pg_exec(d->db, "bw_complete",
                "UPDATE builds SET status = 'completed', finished_at = now(), error = NULL,"
                " artifact_prefix = $3, artifact_sha256 = $4, artifact_size = $5::bigint,"
                " artifact_files = $6::int WHERE id = $1 AND status = 'building' AND worker_id = $2",
                6, p, &n) != ML_OK)
        goto out;
    if (n == 0) { /* another worker took the build over: its result stands */
        rc = 1;
        goto out;
    }
    if (pg_exec(d->db, "bw_files",
                "INSERT INTO build_artifact_files (build_id, path, size, sha256, mode)"
                " SELECT $1, path, size, sha256, mode FROM json_to_recordset($2::json)"
                " AS t (path text, size bigint, sha256 text, mode int)",
                2, fp, NULL) != ML_OK ||
        buildstate_record(d->db, b->id, "completed", NULL, app->executor_url, false) != ML_OK ||
        pg_commit(d->db) != ML_OK)
        goto out;
    rc = ML_OK;
out:
    if (rc != ML_OK)
        pg_rollback(d->db);
    return rc;
}

/* Keeps the last transient error on the build, for the dead-letter handler's message. */
static job_outcome transient(deps *d, build *b, const char *error)
{
    const char *p[] = { b->id, error };

    ml_log_kv(ML_LOG_WARN, "build attempt failed, will retry", "build_id", b->id, "error", error,
              NULL);
    buildlog_add(&b->log, "warn", "done", "attempt %lld failed after %lld ms, will retry: %s",
                 (long long)b->attempt, (long long)(ml_now_ms() - b->started_ms), error);
    pg_exec(d->db, "bw_note", "UPDATE builds SET error = $2 WHERE id = $1 AND status = 'building'",
            2, p, NULL);
    return JOB_RETRY;
}

static job_outcome failed(bw_app *app, deps *d, build *b, const char *error)
{
    return finish_failed(app, d, b, error) == ML_OK ? JOB_ACK : transient(d, b, pg_error(d->db));
}

static int make_scratch(bw_app *app, build *b)
{
    if (ml_snprintf(b->dir, sizeof(b->dir), "%s/%s-XXXXXX", app->scratch, b->id) != ML_OK ||
        !mkdtemp(b->dir))
        return ML_ERR;
    if (ml_snprintf(b->zip, sizeof(b->zip), "%s/package.zip", b->dir) != ML_OK ||
        ml_snprintf(b->tree, sizeof(b->tree), "%s/tree", b->dir) != ML_OK ||
        ml_snprintf(b->tgz, sizeof(b->tgz), "%s/code.tar.gz", b->dir) != ML_OK ||
        ml_snprintf(b->work, sizeof(b->work), "%s/work", b->dir) != ML_OK)
        return ML_ERR;
    /* the scratch dir is 0700 (mkdtemp): the installer's sandbox reaches its work dir by a bind */
    return mkdir(b->tree, 0700) == 0 && mkdir(b->work, 0700) == 0 ? ML_OK : ML_ERR;
}

/* Uploads the archive and manifest, then records completion. */
static job_outcome publish(bw_app *app, deps *d, build *b, const extract_result *r)
{
    char prefix[160], key[200], mkey[200], sha[CRYPTO_SHA256_HEX_LEN], err[512] = "";
    int64_t size = 0;
    cJSON *manifest = NULL;
    char *mtext = NULL, *files = NULL;
    job_outcome out = JOB_RETRY;
    int64_t t0;
    int rc;

    if (ml_snprintf(prefix, sizeof(prefix), "artifacts/%s/%s/", b->function_id, b->id) != ML_OK ||
        ml_snprintf(key, sizeof(key), "%scode.tar.gz", prefix) != ML_OK ||
        ml_snprintf(mkey, sizeof(mkey), "%smanifest.json", prefix) != ML_OK)
        return failed(app, d, b, "artifact key too long");
    t0 = ml_now_ms();
    if (artifact_pack(b->tree, r, b->tgz, err, sizeof(err)) != ML_OK)
        return transient(d, b, err);
    if (s3_put_file(d->s3, key, b->tgz, "application/gzip", sha, &size) != ML_OK)
        return transient(d, b, s3_error(d->s3));
    buildlog_add(&b->log, "info", "upload", "uploaded the artifact: %lld bytes (%zu files, sha256 %s)"
                 " in %lld ms", (long long)size, r->nfiles, sha, (long long)(ml_now_ms() - t0));
    manifest = artifact_manifest(r, key, sha, size);
    mtext = cJSON_PrintUnformatted(manifest);
    files = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(manifest, "files"));
    if (!mtext || !files)
        goto out;
    if (s3_put(d->s3, mkey, mtext, strlen(mtext), "application/json") != ML_OK) {
        out = transient(d, b, s3_error(d->s3));
        goto out;
    }
    rc = finish_completed(app, d, b, files, prefix, sha, size, r->nfiles);
    if (rc == ML_ERR) {
        out = transient(d, b, pg_error(d->db));
        goto out;
    }
    out = JOB_ACK;
    if (rc == ML_OK) {
        metric_inc(app->m_builds, (const char *[]){ "completed" });
        ml_log_kv(ML_LOG_INFO, "build completed", "build_id", b->id, "artifact_sha256", sha, NULL);
        buildlog_add(&b->log, "info", "done", "build completed in %lld ms",
                     (long long)(ml_now_ms() - b->started_ms));
    } else {
        buildlog_add(&b->log, "warn", "done", "another worker took the build over: its result stands");
    }
out:
    free(mtext);
    free(files);
    cJSON_Delete(manifest);
    return out;
}

/* Each refused entry, as the extractor finds it. */
static void log_rejection(void *ud, const char *reason, const char *message)
{
    build *b = ud;

    buildlog_add(&b->log, "error", "extract", "rejected (%s): %s", reason, message);
}

/* Downloads the package into the scratch directory; ML_OK, or the outcome in *out. */
static int download(bw_app *app, deps *d, build *b, job_outcome *out)
{
    int64_t t0 = ml_now_ms();
    struct stat st;
    int rc;

    buildlog_add(&b->log, "info", "download", "downloading the package %s", b->package_key);
    rc = s3_get_file(d->s3, b->package_key, b->zip, (size_t)FNSPEC_MAX_ZIP_BYTES);
    if (rc == S3_NOT_FOUND)
        *out = failed(app, d, b, "the uploaded package is missing from storage; upload it again");
    else if (rc != ML_OK)
        *out = transient(d, b, s3_error(d->s3));
    if (rc != ML_OK)
        return ML_ERR;
    buildlog_add(&b->log, "info", "download", "downloaded %lld bytes in %lld ms",
                 stat(b->zip, &st) == 0 ? (long long)st.st_size : -1LL,
                 (long long)(ml_now_ms() - t0));
    return ML_OK;
}

/* Installs the dependencies into the tree and rescans it into *r (install.h); ML_OK to go
 * on publishing, else the outcome in *out. */
static int dependencies(bw_app *app, deps *d, build *b, extract_result *r, job_outcome *out)
{
    install_job ij = { b->tree, b->work, b->runtime, b->ns, &b->log, d->s3 };
    install_result res;
    extract_result scanned = { 0 };
    char err[1024];

    if (install_run(&app->install, &ij, &res) != ML_OK) {
        if (res.rejected)
            metric_inc(app->m_rejections, (const char *[]){ "install" });
        *out = res.rejected ? failed(app, d, b, res.error) : transient(d, b, res.error);
        return ML_ERR;
    }
    if (!res.ran)
        return ML_OK;
    if (extract_scan_dir(b->tree, &scanned) != ML_OK) {
        *out = transient(d, b, scanned.error);
        extract_result_free(&scanned);
        return ML_ERR;
    }
    if (install_check_size(&scanned, &app->limits, err, sizeof(err)) != ML_OK) {
        metric_inc(app->m_rejections, (const char *[]){ EXTRACT_R_TOO_LARGE });
        buildlog_add(&b->log, "error", "install", "%s", err);
        *out = failed(app, d, b, err);
        extract_result_free(&scanned);
        return ML_ERR;
    }
    extract_result_free(r);
    *r = scanned;
    return ML_OK;
}

/* Everything after the claim. */
static job_outcome run(bw_app *app, deps *d, build *b)
{
    extract_result r = { 0 };
    char err[512];
    job_outcome out;
    int64_t t0;

    if (make_scratch(app, b) != ML_OK)
        return transient(d, b, "cannot create a scratch directory");
    if (download(app, d, b, &out) != ML_OK)
        return out;
    t0 = ml_now_ms();
    if (extract_zip_report(b->zip, b->tree, &app->limits, log_rejection, b, &r) != ML_OK) {
        if (r.rejected) {
            metric_inc(app->m_extract_rejections, (const char *[]){ r.reason });
            metric_inc(app->m_rejections, (const char *[]){ r.reason });
        }
        out = r.rejected ? failed(app, d, b, r.error) : transient(d, b, r.error);
        goto out;
    }
    buildlog_add(&b->log, "info", "extract", "extracted %lld entries (%zu files, %lld bytes) in %lld ms",
                 (long long)r.entries, r.nfiles, (long long)r.total_bytes, (long long)(ml_now_ms() - t0));
    if (extract_check_handler(&r, b->runtime, b->handler, err, sizeof(err)) != ML_OK) {
        metric_inc(app->m_rejections, (const char *[]){ EXTRACT_R_NO_HANDLER });
        buildlog_add(&b->log, "error", "check", "%s", err);
        out = failed(app, d, b, err);
    } else {
        buildlog_add(&b->log, "info", "check", "handler '%s' found for runtime %s", b->handler, b->runtime);
        if (dependencies(app, d, b, &r, &out) == ML_OK)
            out = publish(app, d, b, &r);
    }
out:
    extract_result_free(&r);
    return out;
}

job_outcome job_handle(bw_app *app, deps *d, const mq_message *m)
{
    build b = { 0 };
    job_outcome out;
    int rc;

    if (parse_job(m, &b) != ML_OK) {
        ml_log_kv(ML_LOG_ERROR, "malformed build job dropped", "message_id", m->message_id, NULL);
        return JOB_DROP;
    }
    rc = claim(app, d, &b, m->redelivered);
    if (rc == 1) {
        ml_log_kv(ML_LOG_INFO, "build job skipped: already done or in progress", "build_id", b.id, NULL);
        return JOB_ACK;
    }
    if (rc != ML_OK) {
        ml_log_kv(ML_LOG_WARN, "cannot claim build", "build_id", b.id, "error", pg_error(d->db), NULL);
        return JOB_RETRY;
    }
    b.started_ms = ml_now_ms();
    buildlog_open(&b.log, d->db, b.id, app->m_log_failures);
    buildlog_add(&b.log, "info", "claim", "claimed by worker %s (attempt %lld)%s", app->worker_id,
                 (long long)b.attempt, b.takeover ? ", taking over an unfinished attempt" : "");
    out = run(app, d, &b);
    if (b.dir[0] && ml_rmtree(b.dir) != ML_OK)
        ml_log_kv(ML_LOG_WARN, "cannot remove scratch directory", "dir", b.dir, NULL);
    metric_observe(app->m_duration, (const char *[]){ out == JOB_RETRY ? "retry" : "done" },
                   (double)(ml_now_ms() - b.started_ms) / 1000.0);
    return out;
}

job_outcome job_dead_lettered(bw_app *app, deps *d, const mq_message *m)
{
    build b = { 0 };
    const char *p[] = { NULL };
    PGresult *r;
    job_outcome out = JOB_RETRY;

    if (parse_job(m, &b) != ML_OK)
        return JOB_ACK; /* nothing to mark */
    p[0] = b.id;
    if (pg_begin(d->db) != ML_OK)
        return JOB_RETRY;
    r = pg_query(d->db, "bw_dead",
                 "UPDATE builds SET status = 'failed', finished_at = now(), started_at ="
                 " coalesce(started_at, now()), error = 'the build failed ' || attempts ||"
                 " ' times and was abandoned' || coalesce(': ' || error, '')"
                 " WHERE id = $1 AND status IN ('queued', 'building') RETURNING error",
                 1, p);
    if (r && (PQntuples(r) == 0 ||
              buildstate_record(d->db, b.id, "failed", pg_get_text(r, 0, 0), app->executor_url,
                                false) == ML_OK) &&
        pg_commit(d->db) == ML_OK) {
        if (PQntuples(r) == 1) {
            metric_inc(app->m_builds, (const char *[]){ "failed" });
            ml_log_kv(ML_LOG_WARN, "dead-lettered build marked failed", "build_id", b.id, NULL);
            buildlog_open(&b.log, d->db, b.id, app->m_log_failures);
            buildlog_add(&b.log, "error", "done", "%s", pg_get_text(r, 0, 0));
        }
        out = JOB_ACK;
    } else {
        pg_rollback(d->db);
    }
    PQclear(r);
    return out;
}
