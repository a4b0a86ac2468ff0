"""Generates the SentencePiece-style tokenizer.json fixtures of TestConvertSPMTokenizerJSON.

The Go tests never run this; it documents how the committed files were made. A 512-piece
SentencePiece BPE model with byte fallback (the shape of Llama 2's: <unk> <s> </s>, the 256
<0xXX> byte pieces, then merges) is trained on the text below and saved by transformers in
the tokenizer.json-only forms that Hugging Face directories carry:

  legacy/    transformers 4.36 (legacy=True): normalizer Prepend("▁") + Replace(" ", "▁"),
             no pre_tokenizer; the form of Llama 2, TinyLlama and Mistral 7B on the Hub.
  metaspace/ transformers 5 (its default, legacy=False): no normalizer, pre_tokenizer
             Metaspace with prepend_scheme "first".

Each holds what save_pretrained wrote: tokenizer.json, tokenizer_config.json (and for
transformers 5 chat_template.jinja), no tokenizer.model. reference.json holds, for each
string of STRINGS, the ids the Hugging Face tokenizer gives (add_special_tokens=False) and
its decoding, per variant, and whether the tokenizer puts BOS first. The committed files
were made with sentencepiece 0.2.x, transformers 4.36.2 and 5.25.0, tokenizers 0.23.3.

Run from this directory, in two virtual environments:
  python3 -m venv /tmp/t4 && /tmp/t4/bin/pip install transformers==4.36.2 sentencepiece protobuf
  python3 -m venv /tmp/t5 && /tmp/t5/bin/pip install 'transformers>=5' sentencepiece protobuf
  /tmp/t5/bin/python gen.py train      # sp.model (not committed)
  /tmp/t4/bin/python gen.py legacy
  /tmp/t5/bin/python gen.py metaspace
  /tmp/t5/bin/python gen.py reference  # runs both tokenizer.json files with tokenizers
"""

import json
import os
import shutil
import sys
import tempfile

TEXT = """\
Once upon a time, in a small town by the sea, there lived a girl named Lily. Every morning
she walked to the harbour with her brother Tom, and they counted the boats: 1, 2, 3, 10, 42,
100, 2024. "There are 17 boats today," said Tom. "No, there are 18," said Lily, and laughed.
The fishermen sold their fish in the market. Some spoke French: « Le café est très bon, merci
beaucoup ! » Others spoke German: „Schöne Grüße aus München, über die Brücke.“ A sailor
from Spain said: ¿Dónde está la estación? Niño, señor, mañana.
def fibonacci(n):
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)

for i in range(10):
    print(i, fibonacci(i))
The answer is 3.14159, or about 22/7. Prices: $5.99, €12.50, £3. Temperatures: -4°C to 31°C.
Question: What is 12 times 12? Answer: 144. Question: What is 7 + 8? Answer: 15.
In the evening the children read books. Tom liked stories about dragons and knights; Lily
liked stories about the stars, the moon and the planets. "When I grow up," she said, "I will
build a rocket and fly to Mars." Their mother smiled. "Then you must learn mathematics and
physics, and you must eat your vegetables." They all laughed together by the warm fire.
    Indented lines keep their spaces.  Two spaces here.   Three spaces there.
Tabs	separate	columns	in	tables.
Lists:
- first item
- second item
- third item
The end. THE END. the end? The End!
"""

STRINGS = [
    "",
    "Hello world",
    "hello",
    " hello",
    "  two leading spaces",
    "multiple   spaces   inside",
    "trailing space ",
    "line one\nline two\n\nline four",
    "\n",
    "\tTabbed\tline",
    "Numbers 1234567890 and 3.14159",
    "Grüße aus München, très bon, mañana",
    "Emoji 🙂 and 🚀 need byte fallback",
    "中文字符 and 日本語",
    "Ünïcödé ñ",
    "fibonacci(n - 1) + fibonacci(n - 2)",
    "def f(x):\n    return x * 2\n",
    "Once upon a time, there was a little girl named Lily.",
    "<s>[INST] What is 12 times 12? [/INST]",
    "Question: hi</s>",
    "a▁b",
]

CHAT = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}"
    "{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
)


def train():
    import sentencepiece as spm

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(TEXT)
    spm.SentencePieceTrainer.train(
        input=f.name, model_prefix="sp", model_type="bpe", vocab_size=512,
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", add_dummy_prefix=True, minloglevel=2)
    os.remove(f.name)


def save(variant, legacy):
    from transformers import AutoTokenizer, LlamaTokenizerFast

    src = tempfile.mkdtemp()
    shutil.copy("sp.model", os.path.join(src, "tokenizer.model"))
    t = LlamaTokenizerFast.from_pretrained(src, legacy=legacy, from_slow=True,
                                           add_bos_token=True, add_eos_token=False)
    t.chat_template = CHAT
    # Saved, then loaded without tokenizer.model and saved again: a fine-tune saved from a
    # tokenizer loaded from the Hub's tokenizer.json has no slow tokenizer to write.
    first = tempfile.mkdtemp()
    t.save_pretrained(first)
    if os.path.exists(os.path.join(first, "tokenizer.model")):
        os.remove(os.path.join(first, "tokenizer.model"))
    out = tempfile.mkdtemp()
    AutoTokenizer.from_pretrained(first).save_pretrained(out)
    shutil.rmtree(first)
    shutil.rmtree(variant, ignore_errors=True)
    os.makedirs(variant)
    for name in os.listdir(out):  # all transformers wrote: it writes no tokenizer.model
        shutil.copy(os.path.join(out, name), os.path.join(variant, name))
    shutil.rmtree(src)
    shutil.rmtree(out)


def reference():
    # The tokenizers library runs tokenizer.json as written. (transformers 4.36 gives the
    # same ids for legacy/; transformers 5 rebuilds a Llama tokenizer's pipeline as
    # Metaspace and drops legacy/'s extra "▁" before a leading space.)
    import tokenizers
    from tokenizers import Tokenizer

    ref = {"generator": f"tokenizers {tokenizers.__version__}", "variants": {}}
    for variant in ("legacy", "metaspace"):
        t = Tokenizer.from_file(os.path.join(variant, "tokenizer.json"))
        bos = t.encode("a").ids[0] == t.token_to_id("<s>")
        cases = []
        for s in STRINGS:
            ids = t.encode(s, add_special_tokens=False).ids
            cases.append({"text": s, "ids": ids, "decoded": t.decode(ids)})
        ref["variants"][variant] = {"add_bos": bos, "cases": cases}
    with open("reference.json", "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    step = sys.argv[1]
    if step == "train":
        train()
    elif step == "legacy":
        save("legacy", True)
    elif step == "metaspace":
        save("metaspace", False)
    elif step == "reference":
        reference()
