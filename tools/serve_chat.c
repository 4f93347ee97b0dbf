/* serve_chat.c — chat messages to a prompt (plain default, ChatML, or a {msg} template). */
#include "serve_chat.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int serve_chat_fmt_init(serve_chat_fmt *f, const char *tmpl) {
    memset(f, 0, sizeof *f);
    f->kind = SERVE_CHAT_PLAIN;
    snprintf(f->stop, sizeof f->stop, "\nUser:");
    if (!tmpl || !tmpl[0]) return 1;
    if (strstr(tmpl, "<|im_start|>")) {
        f->kind = SERVE_CHAT_CHATML;
        snprintf(f->stop, sizeof f->stop, "<|im_end|>");
        return 1;
    }
    const char *m = strstr(tmpl, "{msg}");
    if (!m || strstr(m + 5, "{msg}") || strstr(tmpl, "{%") || strstr(tmpl, "{{") ||
        (size_t)(m - tmpl) >= sizeof f->pre || strlen(m + 5) >= sizeof f->post)
        return 0;
    f->kind = SERVE_CHAT_MSG;
    memcpy(f->pre, tmpl, (size_t)(m - tmpl));
    f->pre[m - tmpl] = 0;
    snprintf(f->post, sizeof f->post, "%s", m + 5);
    // "User: " -> "\nUser:": the answer ends where the model starts the next user turn
    const char *a = f->pre, *b = f->pre + strlen(f->pre);
    while (*a == '\n' || *a == ' ' || *a == '\t') a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n')) b--;
    f->stop[0] = 0;
    if (b > a) snprintf(f->stop, sizeof f->stop, "\n%.*s", (int)(b - a), a);
    return 1;
}

const char *serve_chat_fmt_name(const serve_chat_fmt *f) {
    return f->kind == SERVE_CHAT_CHATML ? "chatml" : f->kind == SERVE_CHAT_MSG ? "{msg} template"
                                                                                : "plain";
}

const char *serve_chat_stop(const serve_chat_fmt *f) { return f->stop; }

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static int put(buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

static int puts_(buf *b, const char *s) { return put(b, s, strlen(s)); }

/* content: a string, null (an assistant message with tool calls), or text parts. */
static int put_content(buf *b, const cJSON *content, char *err, size_t errcap, int idx) {
    if (cJSON_IsString(content)) return puts_(b, content->valuestring);
    if (cJSON_IsNull(content)) return 0;
    if (cJSON_IsArray(content)) {
        const cJSON *part;
        cJSON_ArrayForEach(part, content) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
            if (!cJSON_IsObject(part) || !cJSON_IsString(type) || strcmp(type->valuestring, "text") ||
                !cJSON_IsString(text)) {
                snprintf(err, errcap, "messages[%d].content: only parts of type \"text\" with a "
                         "string \"text\" are supported", idx);
                return -1;
            }
            if (puts_(b, text->valuestring)) return -1;
        }
        return 0;
    }
    snprintf(err, errcap, "messages[%d].content must be a string or an array of text parts", idx);
    return -1;
}

int serve_chat_render(const serve_chat_fmt *f, const cJSON *messages, char **out,
                      size_t *boundary, char *err, size_t errcap) {
    *out = NULL;
    *boundary = 0;
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0) {
        snprintf(err, errcap, "'messages' must be a non-empty array");
        return -1;
    }
    buf b = {0};
    int idx = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role) || !role->valuestring[0] ||
            strlen(role->valuestring) > 64) {
            snprintf(err, errcap, "messages[%d] must be an object with a string 'role'", idx);
            goto fail;
        }
        if (!content) {
            snprintf(err, errcap, "messages[%d] has no 'content'", idx);
            goto fail;
        }
        const char *r = role->valuestring;
        int sysish = !strcmp(r, "system") || !strcmp(r, "developer");
        if (f->kind == SERVE_CHAT_CHATML) {
            if (puts_(&b, "<|im_start|>") || puts_(&b, sysish ? "system" : r) || puts_(&b, "\n"))
                goto oom;
            if (put_content(&b, content, err, errcap, idx)) goto fail_or_oom;
            if (puts_(&b, "<|im_end|>\n")) goto oom;
        } else if (f->kind == SERVE_CHAT_MSG) {
            int user = !sysish && strcmp(r, "assistant") != 0;
            if (user && puts_(&b, f->pre)) goto oom;
            if (!user && !sysish && b.len && b.p[b.len - 1] != ' ' && b.p[b.len - 1] != '\n' &&
                puts_(&b, " "))
                goto oom;
            if (put_content(&b, content, err, errcap, idx)) goto fail_or_oom;
            if (puts_(&b, user ? f->post : sysish ? "\n\n" : "\n")) goto oom;
        } else {
            char name[72];
            snprintf(name, sizeof name, "%s", sysish ? "system" : r);
            name[0] = (char)toupper((unsigned char)name[0]);
            if (puts_(&b, name) || puts_(&b, ": ")) goto oom;
            if (put_content(&b, content, err, errcap, idx)) goto fail_or_oom;
            if (puts_(&b, "\n")) goto oom;
        }
        if (idx == 0 && sysish) *boundary = b.len;
        idx++;
    }
    // the generation prompt ({msg} templates end a user turn with it already)
    if (f->kind != SERVE_CHAT_MSG &&
        puts_(&b, f->kind == SERVE_CHAT_CHATML ? "<|im_start|>assistant\n" : "Assistant:"))
        goto oom;
    *out = b.p;
    return 0;
fail_or_oom:
    if (!err[0]) goto oom;
    goto fail;
oom:
    snprintf(err, errcap, "out of memory rendering messages");
fail:
    free(b.p);
    *boundary = 0;
    return -1;
}
