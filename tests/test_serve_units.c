/* test_serve_units.c — the model-free parts of `ggx serve`: chat rendering (plain, ChatML, {msg}
 * templates), request validation, response/SSE bodies, the constant-time key check. The server
 * sources are compiled in directly (they live in tools/, outside ggxcore). */
#include "testutil.h"

#include "../tools/serve_api.c"
#include "../tools/serve_auth.c"
#include "../tools/serve_chat.c"

static const serve_limits k_lim = {.max_tokens_limit = 100, .default_max_tokens = 16,
                                   .default_chat_tokens = 50};

static char *render(const serve_chat_fmt *f, const char *json, size_t *boundary) {
    cJSON *m = cJSON_Parse(json);
    char err[256] = "", *out = NULL;
    int rc = serve_chat_render(f, m, &out, boundary, err, sizeof err);
    cJSON_Delete(m);
    if (rc) {
        free(out);
        return NULL;
    }
    return out;
}

static void test_chat(void) {
    serve_chat_fmt f;
    const char *conv = "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\","
                       "\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Hello.\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Who\"},"
                       "{\"type\":\"text\",\"text\":\" are you?\"}]}]";
    size_t bd = 99;
    TEST_CHECK(serve_chat_fmt_init(&f, NULL) == 1 && f.kind == SERVE_CHAT_PLAIN);
    char *s = render(&f, conv, &bd);
    TEST_CHECK(s && !strcmp(s, "System: Be brief.\nUser: Hi\nAssistant: Hello.\nUser: Who are you?\n"
                               "Assistant:"));
    TEST_CHECK(bd == strlen("System: Be brief.\n"));
    TEST_CHECK(!strcmp(serve_chat_stop(&f), "\nUser:"));
    free(s);
    // a single user message renders exactly like ggx chat's default template
    s = render(&f, "[{\"role\":\"user\",\"content\":\"Hi\"}]", &bd);
    TEST_CHECK(s && !strcmp(s, "User: Hi\nAssistant:") && bd == 0);
    free(s);

    TEST_CHECK(serve_chat_fmt_init(&f, "{% for m in messages %}<|im_start|>{{m.role}}...") == 1);
    TEST_CHECK(f.kind == SERVE_CHAT_CHATML);
    s = render(&f, conv, &bd);
    TEST_CHECK(s && !strcmp(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi"
                               "<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
                               "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n"));
    TEST_CHECK(bd == strlen("<|im_start|>system\nBe brief.<|im_end|>\n"));
    TEST_CHECK(!strcmp(serve_chat_stop(&f), "<|im_end|>"));
    free(s);

    TEST_CHECK(serve_chat_fmt_init(&f, "Q: {msg}\nA:") == 1 && f.kind == SERVE_CHAT_MSG);
    s = render(&f, conv, &bd);
    TEST_CHECK(s && !strcmp(s, "Be brief.\n\nQ: Hi\nA: Hello.\nQ: Who are you?\nA:"));
    TEST_CHECK(!strcmp(serve_chat_stop(&f), "\nQ:"));
    free(s);

    // Jinja that is not ChatML: not understood, plain default
    TEST_CHECK(serve_chat_fmt_init(&f, "{% for m in messages %}{{ m.content }}{% endfor %}") == 0);
    TEST_CHECK(f.kind == SERVE_CHAT_PLAIN);
    // malformed messages
    const char *bad[] = {"[]", "{}", "[1]", "[{\"role\":\"user\"}]", "[{\"content\":\"x\"}]",
                         "[{\"role\":\"user\",\"content\":5}]",
                         "[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]",
                         "[{\"role\":\"\",\"content\":\"x\"}]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        TEST_CHECK_MSG(render(&f, bad[i], &bd) == NULL, "accepted %s", bad[i]);
}

static int parse(const char *body, int chat, serve_req *r, serve_err *e) {
    serve_chat_fmt f;
    serve_chat_fmt_init(&f, NULL);
    return serve_req_parse(body, strlen(body), chat, &f, &k_lim, r, e);
}

static void test_parse(void) {
    serve_req r;
    serve_err e;
    TEST_CHECK(parse("{\"prompt\":\"x\"}", 0, &r, &e) == 0);
    TEST_CHECK(r.max_tokens == 16 && r.temperature == 1.0f && r.top_p == 1.0f && !r.stream &&
               r.n_stops == 0 && !strcmp(r.prompt_text, "x") && r.top_k == 0 && r.min_p == 0 &&
               r.repeat_penalty == 1.0f);
    serve_req_clear(&r);
    TEST_CHECK(parse("{\"prompt\":[[5,6,7]],\"max_tokens\":100,\"temperature\":0,\"stop\":"
                     "[\"a\",\"\",\"bc\"],\"seed\":-3,\"stream\":true,\"n\":1}", 0, &r, &e) == 0);
    TEST_CHECK(r.n_prompt_ids == 3 && r.prompt_ids[2] == 7 && r.max_tokens == 100 &&
               r.temperature == 0 && r.n_stops == 2 && !strcmp(r.stops[1], "bc") && r.has_seed &&
               r.seed == (uint64_t)-3 && r.stream);
    serve_req_clear(&r);
    TEST_CHECK(parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":\"x\","
                     "\"max_completion_tokens\":7}", 1, &r, &e) == 0);
    TEST_CHECK(r.max_tokens == 7 && r.n_stops == 2 && !strcmp(r.stops[1], "\nUser:"));
    serve_req_clear(&r);
    const char *bad[] = {"", "{", "[]", "{\"prompt\":1}", "{\"prompt\":\"x\",\"n\":2}",
                         "{\"prompt\":\"x\",\"max_tokens\":101}", "{\"prompt\":\"x\",\"top_p\":0}",
                         "{\"prompt\":\"x\",\"temperature\":-1}", "{\"prompt\":[1,\"a\"]}",
                         "{\"prompt\":\"x\",\"stream\":1}", "{\"prompt\":\"x\",\"seed\":1e300}",
                         "{\"prompt\":\"x\",\"stream_options\":3}",
                         "{\"prompt\":\"x\",\"ignore_eos\":1}", "{\"max_tokens\":3}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e.status = 0;
        TEST_CHECK_MSG(parse(bad[i], 0, &r, &e) == -1 && e.status == 400 && e.message[0],
                       "accepted %s", bad[i]);
    }
    TEST_CHECK(parse("{\"prompt\":\"x\"}", 1, &r, &e) == -1); // chat needs messages
}

static void test_bodies(void) {
    char *s = serve_json_response(0, "cmpl-1", 5, "m", "a\0b", 3, "stop", 4, 2, 0);
    cJSON *o = cJSON_Parse(s);
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    TEST_CHECK(o && !strcmp(cJSON_GetObjectItem(o, "object")->valuestring, "text_completion"));
    TEST_CHECK(c0 && !strcmp(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "stop"));
    TEST_CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "total_tokens")->valueint == 6);
    cJSON_Delete(o);
    free(s);
    s = serve_sse_chunk(1, "c", 1, "m", "hi \"x\"\n", 7, 0, NULL, -1, 0);
    // one line (the newline in the text is escaped), then a blank line
    TEST_CHECK(s && !strncmp(s, "data: {", 7) && strchr(s, '\n') == s + strlen(s) - 2 &&
               s[strlen(s) - 1] == '\n');
    o = cJSON_Parse(s + 6);
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    TEST_CHECK(o && !strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "delta"), "content")
                                ->valuestring, "hi \"x\"\n"));
    cJSON_Delete(o);
    free(s);
    serve_err e;
    serve_err_set(&e, 401, "authentication_error", "invalid_api_key", "no %s", "key");
    s = serve_json_error(&e);
    TEST_CHECK(s && !strcmp(s, "{\"error\":{\"message\":\"no key\",\"type\":\"authentication_error\","
                               "\"code\":\"invalid_api_key\",\"param\":null}}"));
    free(s);
}

static void test_auth(void) {
    const char *k = "sk-abc123";
    TEST_CHECK(serve_auth_ok("Bearer sk-abc123", k, 9));
    TEST_CHECK(serve_auth_ok("bearer  sk-abc123 ", k, 9));
    TEST_CHECK(!serve_auth_ok(NULL, k, 9));
    TEST_CHECK(!serve_auth_ok("Bearer sk-abc12", k, 9));
    TEST_CHECK(!serve_auth_ok("Bearer sk-abc1234", k, 9));
    TEST_CHECK(!serve_auth_ok("Bearer sk-abc124", k, 9));
    TEST_CHECK(!serve_auth_ok("Basic sk-abc123", k, 9));
    TEST_CHECK(!serve_auth_ok("Bearer ", k, 9));
    TEST_CHECK(serve_ct_equal("", 0, "", 0) && !serve_ct_equal("a", 1, "", 0));
}

int main(void) {
    test_chat();
    test_parse();
    test_bodies();
    test_auth();
    return test_finish("test_serve_units");
}
