"""Build a tiny random-weight BERT encoder in sentence-transformers layout and
golden embeddings computed by Hugging Face transformers, for semcache's native
encoder test (semcache/embed/testdata/bert-tiny).

Usage: python scripts/make_bert_fixture.py OUTDIR
Needs torch, transformers and tokenizers (no internet). Writes OUTDIR/bert-tiny/
(the model folder) and OUTDIR/bert-tiny/golden.json.
"""
import json
import os
import sys

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import BertConfig, BertModel

out = os.path.join(sys.argv[1] if len(sys.argv) > 1 else "out", "bert-tiny")
os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
torch.manual_seed(15)

specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,!?'\"-:;()[]{}/\\@#$%&*+=<>_~`|^")
words = ("the a an of to in is it what does do how go error errors as why when can you explain function "
         "purpose used for http new request test safe call from several goroutines return on quick brown "
         "fox jump over lazy dog hello world cafe naive un believ token ization play").split()
pieces = ["##s", "##ed", "##ing", "##able", "##ization", "##er", "##ly", "##ize", "##ion", "##es"]
vocab = specials + chars + ["##" + c for c in chars[:36]] + words + pieces
seen, uniq = set(), []
for t in vocab:
    if t not in seen:
        seen.add(t)
        uniq.append(t)
vocab = {t: i for i, t in enumerate(uniq)}

tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
tok.post_processor = processors.TemplateProcessing(
    single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
    special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
tok.decoder = decoders.WordPiece(prefix="##")
tok.save(os.path.join(out, "tokenizer.json"))
with open(os.path.join(out, "vocab.txt"), "w") as f:
    f.write("\n".join(uniq) + "\n")
json.dump({"do_lower_case": True, "model_max_length": 64, "tokenizer_class": "BertTokenizer",
           "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]"},
          open(os.path.join(out, "tokenizer_config.json"), "w"), indent=1)

cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu",
                 layer_norm_eps=1e-12, initializer_range=0.3)
model = BertModel(cfg, add_pooling_layer=False).eval()
with torch.no_grad():  # random LayerNorm and biases too, so that a port that skips one fails
    for name, p in model.named_parameters():
        if "LayerNorm.weight" in name:
            p.copy_(1 + 0.3 * torch.randn_like(p))
        elif name.endswith("bias"):
            p.copy_(0.2 * torch.randn_like(p))
model.save_pretrained(out, safe_serialization=True)

json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
           {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
           {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}],
          open(os.path.join(out, "modules.json"), "w"), indent=1)
json.dump({"max_seq_length": 64, "do_lower_case": False}, open(os.path.join(out, "sentence_bert_config.json"), "w"), indent=1)
json.dump({"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
           "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False},
          open(os.path.join(out, "1_Pooling", "config.json"), "w"), indent=1)

sentences = ["Hello, world!", "What does errors.As do in Go?", "HÉLLO Wörld — café naïve",
             "The quick brown fox jumps over the lazy dog.", "unbelievable tokenization 12345",
             "中文 test\tcontrol\u0000char", "xyzzyqwertyuiopasdfghjklzxcvbnmqwertyuiopasdfghjklzxcvbnmqwertyuiopasdfghjklzxcvbnmqwertyuiopasdfghjklzxcvbnm ok",
             "Is errors.As safe to call from several goroutines in Go? " * 3]
golden = {"sentences": []}
for s in sentences:
    enc = tok.encode(s)
    ids = enc.ids[:64]
    if len(ids) == 64:
        ids[-1] = vocab["[SEP]"]
    with torch.no_grad():
        x = torch.tensor([ids])
        h = model(input_ids=x, attention_mask=torch.ones_like(x), token_type_ids=torch.zeros_like(x)).last_hidden_state[0]
    mean = h.mean(0)
    golden["sentences"].append({"text": s, "input_ids": ids, "tokens": tok.encode(s).tokens[:64],
                                "mean_normalized": torch.nn.functional.normalize(mean, dim=0).tolist(),
                                "cls": h[0].tolist()})
try:
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(out, device="cpu")
    emb = st.encode(sentences, convert_to_numpy=True, normalize_embeddings=False)
    golden["sentence_transformers"] = emb.tolist()
except Exception as e:  # not installed: the manual pooling above is what it computes
    golden["sentence_transformers_error"] = repr(e)
import transformers
golden["transformers_version"] = transformers.__version__
json.dump(golden, open(os.path.join(out, "golden.json"), "w"))
print("wrote", out, os.listdir(out))
