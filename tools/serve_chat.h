/*
 * serve_chat.h — turning OpenAI chat messages into one prompt string.
 *
 * ggx does not run Jinja. A model whose metadata has a `tokenizer.chat_template` containing
 * "<|im_start|>" is rendered as ChatML; every other model (and one without a template) gets the
 * plain default of docs/serve.md:
 *
 *     System: You are terse.\n
 *     User: Hi\n
 *     Assistant:
 */
#ifndef GGX_TOOLS_SERVE_CHAT_H
#define GGX_TOOLS_SERVE_CHAT_H

#include <cjson/cJSON.h>
#include <stddef.h>

typedef enum serve_chat_fmt { SERVE_CHAT_PLAIN = 0, SERVE_CHAT_CHATML = 1 } serve_chat_fmt;

/* Pick the format for a model's chat template (NULL or "" -> plain). */
serve_chat_fmt serve_chat_fmt_for_template(const char *tmpl);
const char *serve_chat_fmt_name(serve_chat_fmt f);

/* Render `messages` (a JSON array of {role, content}); content is a string or an array of
 * {"type":"text","text":...} parts. On success returns 0, *out (malloc'ed) and *boundary = byte
 * length of the rendered leading system/developer message (0 if the first message is not one).
 * On a malformed message returns -1 with a message in err. */
int serve_chat_render(serve_chat_fmt f, const cJSON *messages, char **out, size_t *boundary,
                      char *err, size_t errcap);

/* A stop string the format implies (the next turn's header), always applied to chat. */
const char *serve_chat_stop(serve_chat_fmt f);

#endif
