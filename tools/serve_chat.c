/* serve_chat.c — chat messages to a prompt (plain default or ChatML). */
#include "serve_chat.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

serve_chat_fmt serve_chat_fmt_for_template(const char *tmpl) {
    if (tmpl && strstr(tmpl, "<|im_start|>")) return SERVE_CHAT_CHATML;
    return SERVE_CHAT_PLAIN;
}

const char *serve_chat_fmt_name(serve_chat_fmt f) {
    return f == SERVE_CHAT_CHATML ? "chatml" : "plain";
}

const char *serve_chat_stop(serve_chat_fmt f) {
    return f == SERVE_CHAT_CHATML ? "<|im_end|>" : "\nUser:";
}

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

int serve_chat_render(serve_chat_fmt f, const cJSON *messages, char **out, size_t *boundary,
                      char *err, size_t errcap) {
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
        if (f == SERVE_CHAT_CHATML) {
            if (puts_(&b, "<|im_start|>") || puts_(&b, sysish ? "system" : r) || puts_(&b, "\n"))
                goto oom;
            if (put_content(&b, content, err, errcap, idx)) goto fail_or_oom;
            if (puts_(&b, "<|im_end|>\n")) goto oom;
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
    if (puts_(&b, f == SERVE_CHAT_CHATML ? "<|im_start|>assistant\n" : "Assistant:")) goto oom;
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
