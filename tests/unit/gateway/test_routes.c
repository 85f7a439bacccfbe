/* Unit tests: services/gateway/routes.c — every public endpoint's owner, scope and limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "awsctl.h"
#include "awsstream.h"
#include "routes.h"

typedef struct expect {
    const char *method, *path;
    gw_service svc;
    unsigned scope;
    gw_kind kind;
} expect;

/* API.md's table, written out with concrete paths. */
static const expect api[] = {
    { "POST", "/functions", GW_SVC_BUILD_MASTER, GW_SCOPE_WRITE, GW_KIND_BUILD_SUBMIT },
    { "PUT", "/functions/fn1/code", GW_SVC_BUILD_MASTER, GW_SCOPE_WRITE, GW_KIND_BUILD_SUBMIT },
    { "GET", "/builds/0b0e0e0e-0000-4000-8000-000000000000", GW_SVC_BUILD_MASTER, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "GET", "/functions/fn1/builds", GW_SVC_BUILD_MASTER, GW_SCOPE_READ, GW_KIND_PLAIN },
    /* docs/logs.md */
    { "GET", "/functions/fn1/logs", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "GET", "/builds/b1/log", GW_SVC_BUILD_MASTER, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "GET", "/builds/b1/deliveries", GW_SVC_BUILD_MASTER, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "POST", "/builds/b1/deliveries/d1/redeliver", GW_SVC_BUILD_MASTER, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "GET", "/invocations/i1/deliveries", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "POST", "/invocations/i1/deliveries/d1/redeliver", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "GET", "/functions", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "GET", "/functions/fn1", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "PATCH", "/functions/fn1", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "DELETE", "/functions/fn1", GW_SVC_BUILD_MASTER, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "POST", "/functions/fn1/invoke", GW_SVC_EXECUTOR, GW_SCOPE_INVOKE, GW_KIND_INVOKE },
    { "POST", "/batch-invoke", GW_SVC_EXECUTOR, GW_SCOPE_INVOKE, GW_KIND_BATCH_INVOKE },
    { "PUT", "/functions/fn1/url", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "GET", "/functions/fn1/url", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "DELETE", "/functions/fn1/url", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "GET", "/invocations/i1", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "GET", "/functions/fn1/invocations", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "POST", "/functions/fn1/schedules", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "GET", "/functions/fn1/schedules", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "DELETE", "/functions/fn1/schedules/s1", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "GET", "/functions/fn1/dlq", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "POST", "/dlq/d1/replay", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "DELETE", "/dlq/d1", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "POST", "/2015-03-31/functions/fn1/invocations", GW_SVC_EXECUTOR, GW_SCOPE_INVOKE, GW_KIND_AWS_INVOKE },
    { "POST", "/2021-11-15/functions/fn1/response-streaming-invocations", GW_SVC_EXECUTOR,
      GW_SCOPE_INVOKE, GW_KIND_AWS_INVOKE },
    /* docs/versions.md's native routes */
    { "POST", "/functions/fn1/versions", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "GET", "/functions/fn1/versions", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "GET", "/functions/fn1/versions/3", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "DELETE", "/functions/fn1/versions/3", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "PUT", "/functions/fn1/aliases/live", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "GET", "/functions/fn1/aliases/live", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "GET", "/functions/fn1/aliases", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_PLAIN },
    { "DELETE", "/functions/fn1/aliases/live", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_PLAIN },
    { "GET", "/runtimes", GW_SVC_EXECUTOR, GW_SCOPES_FUNCTIONS, GW_KIND_PLAIN },
    /* docs/aws-compat.md's control plane */
    { "POST", "/2015-03-31/functions", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "GET", "/2015-03-31/functions", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_AWS_CTL },
    { "GET", "/2015-03-31/functions/", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_AWS_CTL },
    { "GET", "/2015-03-31/functions/fn1", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_AWS_CTL },
    { "DELETE", "/2015-03-31/functions/fn1", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "GET", "/2015-03-31/functions/fn1/configuration", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_AWS_CTL },
    { "PUT", "/2015-03-31/functions/fn1/configuration", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "PUT", "/2015-03-31/functions/fn1/code", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "POST", "/2015-03-31/functions/fn1/versions", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "GET", "/2015-03-31/functions/fn1/versions", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_AWS_CTL },
    { "POST", "/2015-03-31/functions/fn1/aliases", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "GET", "/2015-03-31/functions/fn1/aliases", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_AWS_CTL },
    { "GET", "/2015-03-31/functions/fn1/aliases/live", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_AWS_CTL },
    { "PUT", "/2015-03-31/functions/fn1/aliases/live", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "DELETE", "/2015-03-31/functions/fn1/aliases/live", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "PUT", "/2017-10-31/functions/fn1/concurrency", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "DELETE", "/2017-10-31/functions/fn1/concurrency", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "GET", "/2019-09-30/functions/fn1/concurrency", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_AWS_CTL },
    { "GET", "/2016-08-19/account-settings", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_AWS_CTL },
    { "GET", "/2016-08-19/account-settings/", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_AWS_CTL },
    { "POST", "/2017-03-31/tags/arn", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "DELETE", "/2017-03-31/tags/arn", GW_SVC_EXECUTOR, GW_SCOPE_WRITE, GW_KIND_AWS_CTL },
    { "GET", "/2017-03-31/tags/arn", GW_SVC_EXECUTOR, GW_SCOPE_READ, GW_KIND_AWS_CTL },
    { "GET", "/aws-code/team-a/f1", GW_SVC_BUILD_MASTER, GW_SCOPE_READ, GW_KIND_AWS_CODE },
    /* function URLs (docs/http.md): any method */
    { "*", "/fn/f1", GW_SVC_EXECUTOR, GW_SCOPE_INVOKE, GW_KIND_FNURL },
    { "*", "/fn/f1/a/b", GW_SVC_EXECUTOR, GW_SCOPE_INVOKE, GW_KIND_FNURL },
    { "*", "/ns/team-a/fn/f1", GW_SVC_EXECUTOR, GW_SCOPE_INVOKE, GW_KIND_FNURL },
    { "*", "/ns/team-a/fn/f1/a", GW_SVC_EXECUTOR, GW_SCOPE_INVOKE, GW_KIND_FNURL },
    /* docs/tenants.md's admin API */
    { "POST", "/admin/namespaces", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_PLAIN },
    { "GET", "/admin/namespaces", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_PLAIN },
    { "GET", "/admin/namespaces/team-a", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_PLAIN },
    { "PATCH", "/admin/namespaces/team-a", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_PLAIN },
    { "POST", "/admin/keys", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_PLAIN },
    { "GET", "/admin/keys", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_PLAIN },
    { "GET", "/admin/keys/AKIA1", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_PLAIN },
    { "DELETE", "/admin/keys/AKIA1", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_PLAIN },
    { "POST", "/admin/keys/AKIA1/disable", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_PLAIN },
    { "POST", "/admin/keys/AKIA1/enable", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_PLAIN },
    { "POST", "/admin/keys/AKIA1/rotate", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_PLAIN },
    { "POST", "/admin/tokens", GW_SVC_EXECUTOR, GW_SCOPE_ADMIN, GW_KIND_MINT },
};

static void test_every_endpoint(void **state)
{
    (void)state;
    assert_int_equal(gw_nroutes, sizeof(api) / sizeof(api[0]));
    for (size_t i = 0; i < sizeof(api) / sizeof(api[0]); i++) {
        bool wrong = true;
        const gw_route_def *d = gw_route_find(api[i].method, api[i].path, &wrong);

        assert_non_null(d);
        assert_false(wrong);
        assert_int_equal(d->service, api[i].svc);
        assert_int_equal(d->scope, api[i].scope);
        assert_int_equal(d->kind, api[i].kind);
    }
    /* "*" takes any method */
    assert_int_equal(gw_route_find("DELETE", "/fn/f1/x", NULL)->kind, GW_KIND_FNURL);
    assert_int_equal(gw_route_find("OPTIONS", "/ns/team-a/fn/f1", NULL)->kind, GW_KIND_FNURL);
}

/* every AWS control-plane route names an operation the engine has, and no other route does
 * (but InvokeWithResponseStream, an invoke answered as an event stream: awsstream.h) */
static void test_aws_operations(void **state)
{
    (void)state;
    for (size_t i = 0; i < gw_nroutes; i++) {
        const gw_route_def *d = &gw_routes[i];
        if (d->kind == GW_KIND_AWS_CTL)
            assert_non_null(gw_awsctl_op(d->aws_op));
        else if (d->kind == GW_KIND_AWS_INVOKE && d->aws_op)
            assert_string_equal(d->aws_op, GW_EVS_OPERATION);
        else
            assert_null(d->aws_op);
    }
    assert_null(gw_awsctl_op("GetPolicy"));
}

static void test_misses(void **state)
{
    bool wrong = false;
    (void)state;
    assert_null(gw_route_find("PUT", "/functions", &wrong));
    assert_true(wrong); /* the server answers 405 with Allow */
    assert_null(gw_route_find("GET", "/functions/fn1/invoke", &wrong));
    assert_true(wrong);
    assert_null(gw_route_find("GET", "/nothing/here", &wrong));
    assert_false(wrong);
    assert_null(gw_route_find("GET", "/functions/fn1/code/extra", &wrong));
    assert_false(wrong);
    /* internal endpoints are not public */
    assert_null(gw_route_find("POST", "/webhooks/build-status/b1", &wrong));
    assert_null(gw_route_find("GET", "/internal/keys/AKIA1", &wrong));
    assert_false(wrong);
}

static void test_limits_and_owners(void **state)
{
    (void)state;
    const gw_route_def *up = gw_route_find("POST", "/functions", NULL);
    const gw_route_def *inv = gw_route_find("POST", "/functions/f/invoke", NULL);
    const gw_route_def *get = gw_route_find("GET", "/functions", NULL);
    /* a 50 MiB ZIP as base64 must fit, and the invoke cap is the sync payload limit */
    assert_true(up->max_body > 50u * 1024 * 1024 / 3 * 4);
    assert_int_equal(inv->max_body, 6u * 1024 * 1024);
    assert_string_equal(gw_service_name(up->service), "build-master");
    assert_string_equal(gw_service_name(get->service), "lambda-executor");
}

/* docs/logs.md: a redeliver takes at most a small JSON body; its path is POST only */
static void test_log_routes(void **state)
{
    bool wrong = false;
    const gw_route_def *b = gw_route_find("POST", "/builds/b1/deliveries/d1/redeliver", NULL);
    const gw_route_def *i = gw_route_find("POST", "/invocations/i1/deliveries/d1/redeliver", NULL);
    (void)state;
    assert_int_equal(b->max_body, GW_MAX_SMALL_BODY);
    assert_int_equal(i->max_body, GW_MAX_SMALL_BODY);
    assert_null(gw_route_find("GET", "/invocations/i1/deliveries/d1/redeliver", &wrong));
    assert_true(wrong);
    assert_null(gw_route_find("POST", "/functions/fn1/logs", &wrong));
    assert_true(wrong);
    assert_null(gw_route_find("GET", "/builds/b1/log/extra", &wrong));
    assert_false(wrong);
}

static void test_capabilities(void **state)
{
    (void)state;
    /* each route asks for what it needs, so one dependency down takes away only that */
    assert_int_equal(gw_route_find("POST", "/functions", NULL)->cap, GW_CAP_BUILD);
    assert_int_equal(gw_route_find("PUT", "/functions/f/code", NULL)->cap, GW_CAP_BUILD);
    assert_int_equal(gw_route_find("POST", "/functions/f/invoke", NULL)->cap, GW_CAP_INVOKE);
    assert_int_equal(gw_route_find("POST", "/2015-03-31/functions/f/invocations", NULL)->cap,
                     GW_CAP_INVOKE);
    assert_int_equal(gw_route_find("PATCH", "/functions/f", NULL)->cap, GW_CAP_WRITE);
    assert_int_equal(gw_route_find("DELETE", "/functions/f", NULL)->cap, GW_CAP_WRITE);
    for (size_t i = 0; i < gw_nroutes; i++) {
        const gw_route_def *d = &gw_routes[i];
        /* exactly one capability; every GET a read, every read a GET */
        assert_true(d->cap && (d->cap & (d->cap - 1)) == 0);
        assert_int_equal(strcmp(d->method, "GET") == 0, d->cap == GW_CAP_READ);
    }
}

static void test_scopes(void **state)
{
    (void)state;
    assert_int_equal(gw_scopes_parse(NULL), 0);
    assert_int_equal(gw_scopes_parse(""), 0);
    assert_int_equal(gw_scopes_parse("functions:read"), GW_SCOPE_READ);
    assert_int_equal(gw_scopes_parse("  functions:write   functions:invoke "), GW_SCOPE_WRITE | GW_SCOPE_INVOKE);
    assert_int_equal(gw_scopes_parse("functions:read functions:write functions:invoke"),
                     GW_SCOPE_READ | GW_SCOPE_WRITE | GW_SCOPE_INVOKE);
    /* exact tokens only */
    assert_int_equal(gw_scopes_parse("functions:readx functions:rea administrator functions:*"), 0);
    assert_int_equal(gw_scopes_parse("FUNCTIONS:READ"), 0);
    assert_string_equal(gw_scope_name(GW_SCOPE_INVOKE), "functions:invoke");
    assert_string_equal(gw_scope_name(GW_SCOPE_READ | GW_SCOPE_WRITE), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_endpoint),
        cmocka_unit_test(test_aws_operations),
        cmocka_unit_test(test_misses),
        cmocka_unit_test(test_limits_and_owners),
        cmocka_unit_test(test_log_routes),
        cmocka_unit_test(test_capabilities),
        cmocka_unit_test(test_scopes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
