/*
 * serve_chat.h — turning OpenAI chat messages into one prompt string.
 *
 * ggx does not run Jinja. The model's `tokenizer.chat_template` is used when it is either
 *   - ChatML (contains "<|im_start|>"): <|im_start|>ROLE\nCONTENT<|im_end|>\n ... then
 *     "<|im_start|>assistant\n"; stop "<|im_end|>", or
 *   - ggx's {msg} format (the one `ggx chat` uses, docs/cli.md): PRE{msg}POST, e.g.
 *     "User: {msg}\nAssistant:"; user messages become PRE+content+POST, an assistant message
 *     follows as content+"\n", a system message as content+"\n\n"; stop "\n"+PRE trimmed.
 * Otherwise (no template, or Jinja) the plain default of docs/serve.md, which is the {msg}
 * format with "User: {msg}\nAssistant:" (ggx chat's default) plus role headers for system and
 * assistant messages:
 *
 *     System: You are terse.\n
 *     User: Hi\n
 *     Assistant:
 */
#ifndef GGX_TOOLS_SERVE_CHAT_H
#define GGX_TOOLS_SERVE_CHAT_H

#include <cjson/cJSON.h>
#include <stddef.h>

typedef enum serve_chat_kind {
    SERVE_CHAT_PLAIN = 0,
    SERVE_CHAT_CHATML = 1,
    SERVE_CHAT_MSG = 2,  /* PRE{msg}POST */
} serve_chat_kind;

typedef struct serve_chat_fmt {
    serve_chat_kind kind;
    char pre[256], post[256], stop[256];
} serve_chat_fmt;

/* Pick the format for a model's chat template (NULL or "" -> plain). Returns 1 when the
 * template was used, 0 when it was not understood (plain default chosen). */
int serve_chat_fmt_init(serve_chat_fmt *f, const char *tmpl);
const char *serve_chat_fmt_name(const serve_chat_fmt *f);

/* Render `messages` (a JSON array of {role, content}); content is a string or an array of
 * {"type":"text","text":...} parts. On success returns 0, *out (malloc'ed) and *boundary = byte
 * length of the rendered leading system/developer message (0 if the first message is not one).
 * On a malformed message returns -1 with a message in err (err[0] must be 0 on entry). */
int serve_chat_render(const serve_chat_fmt *f, const cJSON *messages, char **out,
                      size_t *boundary, char *err, size_t errcap);

/* The stop string the format implies (the next turn's header), "" if none. */
const char *serve_chat_stop(const serve_chat_fmt *f);

#endif
