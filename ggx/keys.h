/*
 * keys.h — metadata key names in .ggx files, shared by the converter (writer) and the model
 * loader (reader). docs/format.md lists them with types and meaning.
 */
#ifndef GGX_KEYS_H
#define GGX_KEYS_H

/* general */
#define GGX_KEY_ARCH            "general.architecture"      /* str: "xlstm" */
#define GGX_KEY_NAME            "general.name"              /* str */
#define GGX_KEY_FILE_TYPE       "general.file_type"         /* str: type name of the big matrices */
#define GGX_KEY_SOURCE          "general.source"            /* str: what it was converted from */
#define GGX_KEY_QUANT_VERSION   "general.quantization_version" /* u32 */

/* xlstm hyper-parameters (u32 unless noted) */
#define GGX_KEY_XL_VOCAB        "xlstm.vocab_size"          /* rows of embedding and lm_head */
#define GGX_KEY_XL_EMBD         "xlstm.embedding_dim"
#define GGX_KEY_XL_BLOCKS       "xlstm.num_blocks"
#define GGX_KEY_XL_HEADS        "xlstm.num_heads"
#define GGX_KEY_XL_QK_DIM       "xlstm.qk_dim"              /* total over heads */
#define GGX_KEY_XL_V_DIM        "xlstm.v_dim"
#define GGX_KEY_XL_QK_HEAD_DIM  "xlstm.qk_head_dim"
#define GGX_KEY_XL_V_HEAD_DIM   "xlstm.v_head_dim"
#define GGX_KEY_XL_FFN_DIM      "xlstm.ffn_dim"
#define GGX_KEY_XL_GATE_CAP     "xlstm.gate_soft_cap"       /* f32; <= 0: none */
#define GGX_KEY_XL_LOGIT_CAP    "xlstm.output_logit_soft_cap" /* f32; <= 0: none */
#define GGX_KEY_XL_NORM_EPS     "xlstm.norm_eps"            /* f32 */
#define GGX_KEY_XL_EPS          "xlstm.eps"                 /* f32: mLSTM denominator eps */
#define GGX_KEY_XL_CHUNK        "xlstm.chunk_size"
#define GGX_KEY_XL_USE_BIAS     "xlstm.use_bias"            /* bool */
#define GGX_KEY_XL_OUT_NORM     "xlstm.add_out_norm"        /* bool */
#define GGX_KEY_XL_TIE_EMB      "xlstm.tie_word_embeddings" /* bool */
#define GGX_KEY_XL_WEIGHT_MODE  "xlstm.weight_mode"         /* str: layout of the stored tensors ("single") */
#define GGX_KEY_XL_SRC_WMODE    "xlstm.source_weight_mode"  /* str: what the checkpoint had */
#define GGX_KEY_XL_MAX_CHUNKSZ  "xlstm.max_inference_chunksize"
#define GGX_KEY_XL_QK_FACTOR    "xlstm.qk_dim_factor"       /* f32 */
#define GGX_KEY_XL_V_FACTOR     "xlstm.v_dim_factor"        /* f32 */
#define GGX_KEY_XL_FFN_FACTOR   "xlstm.ffn_proj_factor"     /* f32 */
#define GGX_KEY_XL_FFN_ROUND    "xlstm.ffn_round_up_to_multiple_of"

/* tokenizer */
#define GGX_KEY_TOK_JSON        "tokenizer.json"            /* blob: the original tokenizer.json */
#define GGX_KEY_TOK_MODEL       "tokenizer.model"           /* str: "bpe" */
#define GGX_KEY_TOK_N_VOCAB     "tokenizer.n_vocab"         /* u32: highest id + 1 */
#define GGX_KEY_TOK_BOS         "tokenizer.bos_id"          /* i32, as config/generation_config say; -1 none */
#define GGX_KEY_TOK_EOS         "tokenizer.eos_id"          /* i32, as given (7B: 2, a quirk) */
#define GGX_KEY_TOK_PAD         "tokenizer.pad_id"          /* i32 */
#define GGX_KEY_TOK_EOT         "tokenizer.eot_id"          /* i32: id of <|endoftext|> in the vocab */
#define GGX_KEY_TOK_ADD_BOS     "tokenizer.add_bos"         /* bool: prepend bos to a fresh context */
#define GGX_KEY_TOK_CHAT_TMPL   "tokenizer.chat_template"   /* str, optional */

#endif
