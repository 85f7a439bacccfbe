/* test_install.c — dependency installation's parts (install-int.h): detection and opt-outs,
 * the per-namespace registries file, URL helpers, the installer's argv/env per ecosystem,
 * the egress allow-list, error lines picked from captured pip/npm outputs, the merge rules
 * (the package wins, links dropped, nothing written through a link), the size report after
 * installation, and extract_scan_dir. The sandboxed run itself is covered end to end. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <cJSON.h>

#include "bw_fixture.h"
#include "install-int.h"
#include "runtimes.h"
#include "sandbox.h"

static void mk(const char *rel)
{
    assert_int_equal(mkdir(at(rel), 0755), 0);
}

static char *slurp(const char *rel)
{
    static char buf[4096];
    int fd = open(at(rel), O_RDONLY);
    ssize_t n;

    if (fd < 0)
        return NULL;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n < 0 ? 0 : n] = '\0';
    return buf;
}

/* ---- detection ---- */

static void test_detect_python(void **state)
{
    install_detection d;

    (void)state;
    mk("t");
    put("t/app.py", "x", 0644);
    install_detect(at("t"), "python3", &d);
    assert_int_equal(d.eco, INSTALL_NONE);
    assert_non_null(strstr(d.why, "no requirements.txt"));
    put("t/requirements.txt", "six\n", 0644);
    install_detect(at("t"), "python3", &d);
    assert_int_equal(d.eco, INSTALL_PIP);
    /* a package.json means nothing to a python function */
    put("t/package.json", "{}", 0644);
    install_detect(at("t"), "python3", &d);
    assert_int_equal(d.eco, INSTALL_PIP);
    install_detect(at("t"), "provided", &d);
    assert_int_equal(d.eco, INSTALL_NONE);
    /* opted out */
    put("t/minilambda.json", "{\"build\": {\"install\": false}}", 0644);
    install_detect(at("t"), "python3", &d);
    assert_int_equal(d.eco, INSTALL_NONE);
    assert_non_null(strstr(d.why, "minilambda.json"));
    /* true, or a malformed file (warned about), installs */
    put("t/minilambda.json", "{\"build\": {\"install\": true}}", 0644);
    install_detect(at("t"), "python3", &d);
    assert_int_equal(d.eco, INSTALL_PIP);
    put("t/minilambda.json", "{not json", 0644);
    install_detect(at("t"), "python3", &d);
    assert_int_equal(d.eco, INSTALL_PIP);
    assert_non_null(strstr(d.warn, "not valid JSON"));
}

static void test_detect_node(void **state)
{
    install_detection d;

    (void)state;
    mk("n");
    put("n/index.js", "x", 0644);
    install_detect(at("n"), "nodejs", &d);
    assert_int_equal(d.eco, INSTALL_NONE);
    put("n/package.json", "{\"dependencies\": {\"ms\": \"2.1.3\"}}", 0644);
    install_detect(at("n"), "nodejs", &d);
    assert_int_equal(d.eco, INSTALL_NPM);
    assert_false(d.lockfile);
    assert_non_null(strstr(d.warn, "npm install"));
    put("n/npm-shrinkwrap.json", "{}", 0644);
    install_detect(at("n"), "nodejs", &d);
    assert_true(d.lockfile);
    assert_string_equal(d.lockname, "npm-shrinkwrap.json");
    put("n/package-lock.json", "{}", 0644);
    install_detect(at("n"), "nodejs", &d);
    assert_string_equal(d.lockname, "package-lock.json");
    assert_string_equal(d.warn, "");
    /* vendored */
    mk("n/node_modules");
    install_detect(at("n"), "nodejs", &d);
    assert_int_equal(d.eco, INSTALL_NONE);
    assert_non_null(strstr(d.why, "vendored"));
}

/* ---- settings ---- */

static void test_registries_file(void **state)
{
    install_config cfg = { .pip_index_url = "https://pypi.org/simple", .pip_extra_index_url = "",
                           .npm_registry = "https://registry.npmjs.org/", .npm_token = "",
                           .npm_cli_cfg = "" };
    install_settings s;
    char err[512] = "";

    (void)state;
    put("reg.json", "{\"team-a\": {\"pip_index_url\": \"http://u:p@idx.internal:8080/simple\","
        " \"npm_token\": \"tok\"}}", 0644);
    cfg.namespaces_file = at("reg.json");
    assert_int_equal(install_config_prepare(&cfg, err, sizeof(err)), ML_OK);
    install_settings_for(&cfg, "team-a", &s);
    assert_string_equal(s.pip_index_url, "http://u:p@idx.internal:8080/simple");
    assert_string_equal(s.npm_token, "tok");
    assert_string_equal(s.npm_registry, "https://registry.npmjs.org/");
    install_settings_for(&cfg, "default", &s);
    assert_string_equal(s.pip_index_url, "https://pypi.org/simple");
    install_config_free(&cfg);

    put("reg.json", "{\"team-a\": {\"pip_index_url\": \"ftp://x/\"}}", 0644);
    assert_int_equal(install_config_prepare(&cfg, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "not an http(s) URL"));
    put("reg.json", "{\"team-a\": {\"pip_index\": \"http://x/\"}}", 0644);
    assert_int_equal(install_config_prepare(&cfg, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "'pip_index'"));
    put("reg.json", "[1]", 0644);
    assert_int_equal(install_config_prepare(&cfg, err, sizeof(err)), ML_ERR);
    put("reg.json", "{", 0644);
    assert_int_equal(install_config_prepare(&cfg, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "not valid JSON"));
    cfg.namespaces_file = at("missing.json");
    assert_int_equal(install_config_prepare(&cfg, err, sizeof(err)), ML_ERR);
    assert_null(cfg.overrides);
}

static void test_urls(void **state)
{
    char b[256];

    (void)state;
    assert_int_equal(install_url_hostport("https://pypi.org/simple", b, sizeof(b)), ML_OK);
    assert_string_equal(b, "pypi.org:443");
    assert_int_equal(install_url_hostport("http://user:p@ss@127.0.0.1:8765/simple/", b, sizeof(b)), ML_OK);
    assert_string_equal(b, "127.0.0.1:8765");
    assert_int_equal(install_url_hostport("http://Registry.Example", b, sizeof(b)), ML_OK);
    assert_string_equal(b, "Registry.Example:80");
    assert_int_equal(install_url_hostport("http://[::1]:4873/", b, sizeof(b)), ML_OK);
    assert_string_equal(b, "[::1]:4873");
    assert_int_equal(install_url_hostport("https://[::1]/", b, sizeof(b)), ML_OK);
    assert_string_equal(b, "[::1]:443");
    assert_int_equal(install_url_hostport("ftp://x/", b, sizeof(b)), ML_ERR);
    assert_int_equal(install_url_hostport("pypi.org", b, sizeof(b)), ML_ERR);
    assert_int_equal(install_url_hostport("http:///x", b, sizeof(b)), ML_ERR);
    install_url_redact("https://user:secret@idx.example/simple", b, sizeof(b));
    assert_string_equal(b, "https://idx.example/simple");
    install_url_redact("https://idx.example/simple", b, sizeof(b));
    assert_string_equal(b, "https://idx.example/simple");
}

/* ---- plans ---- */

static bool has(const char *const *vec, const char *s)
{
    for (size_t i = 0; vec[i]; i++)
        if (!strcmp(vec[i], s))
            return true;
    return false;
}

static size_t count(const char *const *vec)
{
    size_t n = 0;

    while (vec[n])
        n++;
    return n;
}

static void test_plan_pip(void **state)
{
    install_config cfg = { .egress_allow = "files.internal:443, 10.0.0.5:3128" };
    install_settings s = { "https://u:pw@idx.example/simple", "http://extra.example:8080/x", "", "" };
    static const char *const want[] = { "/usr/bin/python3.11", "-m", "pip", "install", "--target",
                                        "/work/out", "--no-compile", "--only-binary=:all:",
                                        "--no-warn-script-location", "-r",
                                        "/work/src/requirements.txt", NULL };
    install_plan *p = calloc(1, sizeof(*p));
    char err[256];

    (void)state;
    assert_int_equal(install_plan_allow(&cfg, &s, INSTALL_PIP, p, err, sizeof(err)), ML_OK);
    assert_int_equal(p->nallow, 4);
    assert_string_equal(p->allow[0], "idx.example:443");
    assert_string_equal(p->allow[1], "extra.example:8080");
    assert_string_equal(p->allow[2], "files.internal:443");
    assert_string_equal(p->allow[3], "10.0.0.5:3128");
    assert_int_equal(install_plan_build(&cfg, &s, INSTALL_PIP, "/usr/bin/python3.11", NULL, false, 41234,
                                        "/opt/minilambda-ca/ca.pem", p, err, sizeof(err)), ML_OK);
    assert_int_equal(count(p->argv), count(want));
    for (size_t i = 0; want[i]; i++)
        assert_string_equal(p->argv[i], want[i]);
    assert_true(has(p->env, "PATH=/usr/bin:/bin"));
    assert_true(has(p->env, "HOME=/work/home"));
    assert_true(has(p->env, "LANG=C.UTF-8"));
    assert_true(has(p->env, "HTTP_PROXY=http://127.0.0.1:41234"));
    assert_true(has(p->env, "HTTPS_PROXY=http://127.0.0.1:41234"));
    assert_true(has(p->env, "http_proxy=http://127.0.0.1:41234"));
    assert_true(has(p->env, "https_proxy=http://127.0.0.1:41234"));
    assert_true(has(p->env, "NO_PROXY="));
    assert_true(has(p->env, "PIP_INDEX_URL=https://u:pw@idx.example/simple"));
    assert_true(has(p->env, "PIP_EXTRA_INDEX_URL=http://extra.example:8080/x"));
    assert_true(has(p->env, "PIP_DISABLE_PIP_VERSION_CHECK=1"));
    assert_true(has(p->env, "PIP_NO_INPUT=1"));
    assert_true(has(p->env, "PIP_CERT=/opt/minilambda-ca/ca.pem"));
    assert_string_equal(p->index_clean, "https://idx.example/simple");
    assert_string_equal(p->cwd, "/work");

    /* sdists allowed: no --only-binary, and the flags (cache key) differ */
    {
        install_plan *q = calloc(1, sizeof(*q));
        cfg.pip_allow_sdist = true;
        assert_int_equal(install_plan_build(&cfg, &s, INSTALL_PIP, "/opt/py/bin/python3", NULL, false,
                                            1, NULL, q, err, sizeof(err)), ML_OK);
        assert_false(has(q->argv, "--only-binary=:all:"));
        assert_string_not_equal(q->flags, p->flags);
        assert_true(has(q->env, "PATH=/opt/py/bin:/usr/bin:/bin"));
        for (size_t i = 0; q->env[i]; i++)
            assert_null(strstr(q->env[i], "PIP_CERT"));
        free(q);
    }
    free(p);
}

static void test_plan_npm(void **state)
{
    install_config cfg = { 0 };
    install_settings s = { "", "", "http://127.0.0.1:4873/", "s3cr3t" };
    install_plan *p = calloc(1, sizeof(*p)), *q = calloc(1, sizeof(*q));
    char err[256];

    (void)state;
    assert_int_equal(install_plan_allow(&cfg, &s, INSTALL_NPM, p, err, sizeof(err)), ML_OK);
    assert_int_equal(p->nallow, 1);
    assert_string_equal(p->allow[0], "127.0.0.1:4873");
    assert_int_equal(install_plan_build(&cfg, &s, INSTALL_NPM, "/usr/bin/node",
                                        "/usr/lib/node_modules/npm/bin/npm-cli.js", true, 5000, NULL,
                                        p, err, sizeof(err)), ML_OK);
    assert_int_equal(count(p->argv), 4);
    assert_string_equal(p->argv[0], "/usr/bin/node");
    assert_string_equal(p->argv[1], "/usr/lib/node_modules/npm/bin/npm-cli.js");
    assert_string_equal(p->argv[2], "ci");
    assert_string_equal(p->argv[3], "--omit=dev");
    assert_string_equal(p->cwd, "/work/src");
    assert_true(has(p->env, "npm_config_registry=http://127.0.0.1:4873/"));
    assert_true(has(p->env, "npm_config_cache=/work/home/.npm"));
    assert_true(has(p->env, "npm_config_update_notifier=false"));
    assert_true(has(p->env, "npm_config_fund=false"));
    assert_true(has(p->env, "npm_config_audit=false"));
    assert_true(has(p->env, "HTTPS_PROXY=http://127.0.0.1:5000"));
    assert_string_equal(p->npmrc, "//127.0.0.1:4873/:_authToken=s3cr3t\n");
    /* the token is never in the environment (install scripts would see it in argv/env dumps) */
    for (size_t i = 0; p->env[i]; i++)
        assert_null(strstr(p->env[i], "s3cr3t"));

    s.npm_token = "";
    s.npm_registry = "https://reg.example/npm";
    assert_int_equal(install_plan_build(&cfg, &s, INSTALL_NPM, "/usr/bin/node", "/x/npm-cli.js", false,
                                        5000, "/opt/minilambda-ca/ca.pem", q, err, sizeof(err)), ML_OK);
    assert_string_equal(q->argv[2], "install");
    assert_true(has(q->argv, "--omit=dev"));
    assert_true(has(q->argv, "--no-package-lock"));
    assert_true(has(q->env, "npm_config_cafile=/opt/minilambda-ca/ca.pem"));
    assert_string_equal(q->npmrc, "");
    assert_string_not_equal(q->flags, p->flags);
    free(p);
    free(q);
}

static void test_plan_allow_errors(void **state)
{
    install_config cfg = { .egress_allow = "nohostport" };
    install_settings s = { "https://pypi.org/simple", "", "", "" };
    install_plan *p = calloc(1, sizeof(*p));
    char err[256];

    (void)state;
    assert_int_equal(install_plan_allow(&cfg, &s, INSTALL_PIP, p, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "host:port"));
    memset(p, 0, sizeof(*p));
    cfg.egress_allow = "";
    s.pip_index_url = "file:///srv/wheels";
    assert_int_equal(install_plan_allow(&cfg, &s, INSTALL_PIP, p, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "not an http(s) URL"));
    free(p);
}

/* ---- error lines ---- */

static const char pip_out[] =
    "Looking in indexes: http://127.0.0.1:8765/simple\n"
    "Collecting six==1.16.0\n"
    "  Downloading http://127.0.0.1:8765/packages/six-1.16.0-py2.py3-none-any.whl (11 kB)\n"
    "ERROR: Could not find a version that satisfies the requirement nosuchpkg==1.0 (from versions: none)\n"
    "ERROR: No matching distribution found for nosuchpkg==1.0\n";

static const char npm_out[] =
    "npm WARN config production Use `--omit=dev` instead.\n"
    "npm ERR! code E404\n"
    "npm ERR! 404 Not Found - GET http://127.0.0.1:4873/nosuchpkg - no such package available\n"
    "npm ERR! 404 \n"
    "npm ERR! 404  'nosuchpkg@^1.0.0' is not in this registry.\n"
    "npm ERR! 404 \n"
    "npm ERR! 404 Note that you can also install from a\n"
    "npm ERR! 404 tarball, folder, http url, or git url.\n"
    "\n"
    "npm ERR! A complete log of this run can be found in:\n"
    "npm ERR!     /work/home/.npm/_logs/2026-12-07T15_00_00_000Z-debug-0.log\n";

static void test_error_summary(void **state)
{
    char out[1024];

    (void)state;
    install_error_summary(INSTALL_PIP, pip_out, strlen(pip_out), "http://127.0.0.1:8765/simple", out,
                          sizeof(out));
    assert_non_null(strstr(out, "ERROR: Could not find a version that satisfies the requirement nosuchpkg==1.0"));
    assert_non_null(strstr(out, "ERROR: No matching distribution found for nosuchpkg==1.0"));
    assert_non_null(strstr(out, "(index: http://127.0.0.1:8765/simple)"));
    assert_null(strstr(out, "Collecting"));

    install_error_summary(INSTALL_NPM, npm_out, strlen(npm_out), "http://127.0.0.1:4873/", out, sizeof(out));
    assert_non_null(strstr(out, "npm ERR! code E404"));
    assert_non_null(strstr(out, "'nosuchpkg@^1.0.0' is not in this registry"));
    assert_non_null(strstr(out, "(index: http://127.0.0.1:4873/)"));
    assert_null(strstr(out, "npm WARN"));
    assert_null(strstr(out, "complete log"));
    assert_null(strstr(out, "_logs"));
    assert_true(strlen(out) <= 800 + 64);

    /* npm 10 spells it "npm error" */
    {
        const char *t = "npm error code E404\nnpm error 404  'x@1' is not in this registry.\n";
        install_error_summary(INSTALL_NPM, t, strlen(t), "", out, sizeof(out));
    }
    assert_non_null(strstr(out, "npm error code E404"));

    /* nothing marked: the last lines */
    {
        const char *t = "line one\nTraceback (most recent call last):\nKeyError: 'x'\n";
        install_error_summary(INSTALL_PIP, t, strlen(t), "", out, sizeof(out));
    }
    assert_non_null(strstr(out, "KeyError: 'x'"));
    assert_int_equal(out[strlen(out) - 1], '\'');
}

static void test_error_summary_bounded(void **state)
{
    char text[20000], out[1024];
    size_t n = 0;

    (void)state;
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "ERROR: a long complaint number %d about something\n", i);
    install_error_summary(INSTALL_PIP, text, n, "", out, sizeof(out));
    assert_true(strlen(out) <= 800);
    assert_non_null(strstr(out, "number 0 "));
    assert_non_null(strstr(out, "..."));
}

/* ---- merge ---- */

static void test_merge_rules(void **state)
{
    install_merge_stats st;
    char err[256] = "";
    struct stat sb;

    (void)state;
    mk("pkg");
    put("pkg/app.py", "mine", 0644);
    mk("pkg/six");
    put("pkg/six/__init__.py", "my six", 0644);
    mk("outside");
    mk("out");
    put("out/app.py", "theirs", 0644);
    put("out/six.py", "six", 0755);
    mk("out/six");
    put("out/six/__init__.py", "their six", 0644);
    put("out/six/extra.py", "extra", 0600);
    mk("out/pkg");
    mk("out/pkg/deep");
    put("out/pkg/deep/mod.py", "deep", 0640);
    assert_int_equal(symlink("/etc/passwd", at("out/passwd")), 0);
    assert_int_equal(symlink(at("outside"), at("out/escape")), 0); /* a dir link: never entered */
    assert_int_equal(mkfifo(at("out/fifo"), 0644), 0);
    assert_int_equal(install_merge(at("out"), at("pkg"), &st, err, sizeof(err)), ML_OK);
    /* the package's own files win */
    assert_string_equal(slurp("pkg/app.py"), "mine");
    assert_string_equal(slurp("pkg/six/__init__.py"), "my six");
    assert_int_equal(st.kept, 2);
    assert_non_null(strstr(st.kept_names, "app.py"));
    assert_non_null(strstr(st.kept_names, "six/__init__.py"));
    /* new files merged, modes normalised */
    assert_string_equal(slurp("pkg/six.py"), "six");
    assert_int_equal(stat(at("pkg/six.py"), &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0755);
    assert_int_equal(stat(at("pkg/six/extra.py"), &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0644);
    assert_int_equal(stat(at("pkg/pkg/deep/mod.py"), &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0644);
    assert_int_equal(stat(at("pkg/pkg/deep"), &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0755);
    /* links and the fifo dropped */
    assert_int_equal(st.links, 3);
    assert_int_equal(lstat(at("pkg/passwd"), &sb), -1);
    assert_int_equal(lstat(at("pkg/escape"), &sb), -1);
    assert_int_equal(lstat(at("pkg/fifo"), &sb), -1);
    assert_int_equal(st.files, 3);
}

/* A link in the tree where the output has a directory: nothing is written through it. */
static void test_merge_no_escape(void **state)
{
    install_merge_stats st;
    char err[256] = "";
    struct stat sb;
    DIR *d;
    int n = 0;

    (void)state;
    mk("victim");
    mk("tree");
    assert_int_equal(symlink(at("victim"), at("tree/lib")), 0);
    mk("o");
    mk("o/lib");
    put("o/lib/evil.py", "x", 0644);
    mk("o/node_modules");
    put("o/node_modules/ok.js", "ok", 0644);
    assert_int_equal(install_merge(at("o"), at("tree"), &st, err, sizeof(err)), ML_OK);
    assert_int_equal(lstat(at("victim/evil.py"), &sb), -1);
    d = opendir(at("victim"));
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    assert_int_equal(n, 0);
    assert_int_equal(st.kept, 1); /* the subtree counts as the package's own */
    assert_string_equal(slurp("tree/node_modules/ok.js"), "ok");

    /* the destination itself a link: refused */
    assert_int_equal(symlink(at("victim"), at("linkdest")), 0);
    assert_int_equal(install_merge(at("o"), at("linkdest"), &st, err, sizeof(err)), ML_ERR);
    assert_int_equal(lstat(at("victim/node_modules"), &sb), -1);
}

/* ---- scan and size ---- */

static void test_scan_dir(void **state)
{
    extract_result r = { 0 };

    (void)state;
    mk("s");
    mk("s/b");
    mk("s/empty");
    put("s/b/z.py", "zz", 0700);
    put("s/a.py", "a", 0600);
    assert_int_equal(symlink("/etc/passwd", at("s/link")), 0);
    assert_int_equal(extract_scan_dir(at("s"), &r), ML_OK);
    assert_int_equal(r.nfiles, 2);
    assert_string_equal(r.files[0].path, "a.py");
    assert_int_equal(r.files[0].mode, 0644);
    assert_int_equal(r.files[0].size, 1);
    assert_string_equal(r.files[0].sha256, "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb");
    assert_string_equal(r.files[1].path, "b/z.py");
    assert_int_equal(r.files[1].mode, 0755);
    assert_int_equal(r.total_bytes, 3);
    assert_int_equal(r.entries, 4);
    assert_int_equal(strlen(r.sha256), 64);
    extract_result_free(&r);
    mk("e");
    assert_int_equal(extract_scan_dir(at("e"), &r), ML_ERR);
    assert_false(r.rejected);
    extract_result_free(&r);
}

static void test_size_report(void **state)
{
    extract_file files[] = {
        { "app.py", 1000, "", 0644 },
        { "node_modules/@aws-sdk/client-s3/dist/index.js", 120LL << 20, "", 0644 },
        { "node_modules/@aws-sdk/client-s3/package.json", 1000, "", 0644 },
        { "node_modules/lodash/lodash.js", 10LL << 20, "", 0644 },
        { "numpy/core/_multiarray.so", 90LL << 20, "", 0755 },
        { "numpy/linalg/x.so", 10LL << 20, "", 0755 },
        { "scipy.libs/libopenblas.so", 40LL << 20, "", 0755 },
    };
    extract_result r = { .files = files, .nfiles = ML_ARRAY_LEN(files), .entries = 20 };
    extract_limits lim = { .max_total_bytes = 250LL << 20, .max_entries = 10000 };
    char err[1024];

    (void)state;
    for (size_t i = 0; i < r.nfiles; i++)
        r.total_bytes += files[i].size;
    assert_int_equal(install_check_size(&r, &lim, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "is 270.0 MiB unpacked, over the 250 MiB limit; largest: "
                                "node_modules/@aws-sdk/client-s3 (120.0 MiB), numpy (100.0 MiB), "
                                "scipy.libs (40.0 MiB), node_modules/lodash (10.0 MiB)"));
    lim.max_total_bytes = 300LL << 20;
    assert_int_equal(install_check_size(&r, &lim, err, sizeof(err)), ML_OK);
    lim.max_entries = 10;
    assert_int_equal(install_check_size(&r, &lim, err, sizeof(err)), ML_ERR);
    assert_non_null(strstr(err, "20 files and directories, over the 10 limit"));
}

static int fake_probe(const char *interpreter, const char *family, char *ver, size_t len, void *ud)
{
    (void)interpreter, (void)ud;
    ml_strlcpy(ver, !strcmp(family, "nodejs") ? "Node.js v20.0.0" : "Python 3.11.2", len);
    return ML_OK;
}

/* install_run before anything is mounted or run: off, nothing to do, no interpreter, and a
 * worker whose sandbox has no namespaces (sandbox_init never ran here) refusing to run an
 * installer rather than run the package's code unsandboxed. */
static void test_run_preflight(void **state)
{
    runtimes_table rt;
    buildlog log = { 0 }; /* no database: lines are dropped */
    install_config cfg = { .enabled = true, .pip_index_url = "https://pypi.org/simple",
                           .pip_extra_index_url = "", .npm_registry = "https://registry.npmjs.org/",
                           .npm_token = "", .timeout_s = 10, .memory_mb = 256, .disk_mb = 64,
                           .runtimes = &rt };
    install_job job = { .runtime = "python3.11", .ns = "default", .log = &log };
    install_result res;
    char err[128];

    (void)state;
    runtimes_init(&rt);
    assert_int_equal(runtimes_configure(&rt, "python3.11=/usr/bin/python3.11", err, sizeof(err)), ML_OK);
    runtimes_discover(&rt, "/usr/bin/python3.11", "/usr/bin/node", fake_probe, NULL);
    mk("pkg");
    mk("work");
    put("pkg/app.py", "x", 0644);
    job.tree = at("pkg");
    job.work = at("work");
    /* nothing to install */
    assert_int_equal(install_run(&cfg, &job, &res), ML_OK);
    assert_false(res.ran);
    put("pkg/requirements.txt", "six\n", 0644);
    /* off */
    cfg.enabled = false;
    assert_int_equal(install_run(&cfg, &job, &res), ML_OK);
    assert_false(res.ran);
    cfg.enabled = true;
    /* no sandbox namespaces: refused, the build fails (not retried) */
    assert_int_equal(sandbox_features() & SANDBOX_F_NAMESPACES, 0);
    assert_int_equal(install_run(&cfg, &job, &res), ML_ERR);
    assert_true(res.rejected);
    assert_non_null(strstr(res.error, "refused"));
    assert_false(res.ran);
    /* a runtime this worker has no interpreter for: a platform problem, retried */
    job.runtime = "python3.9";
    assert_int_equal(install_run(&cfg, &job, &res), ML_ERR);
    assert_false(res.rejected);
    assert_non_null(strstr(res.error, "no interpreter"));
}

static void test_platform(void **state)
{
    char p[128];

    (void)state;
    install_platform(p, sizeof(p));
    assert_non_null(strstr(p, "-linux-gnu-glibc2."));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_detect_python),   T(test_detect_node),   T(test_registries_file),
        T(test_urls),            T(test_plan_pip),      T(test_plan_npm),
        T(test_plan_allow_errors), T(test_error_summary), T(test_error_summary_bounded),
        T(test_merge_rules),     T(test_merge_no_escape), T(test_scan_dir),
        T(test_size_report),     T(test_run_preflight), T(test_platform),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
