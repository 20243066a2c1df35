"""GGUF export (llama.cpp, Ollama): what the file holds, read back with gguf's reader (always),
checked in llama.cpp itself where llama-cpp-python is installed, and bad input refused with one
line and nothing left behind."""

import importlib.util

import gguf
import numpy as np
import pytest
import torch

from playground.cli import main
from playground.engine.data.bpe import END_OF_TEXT, BPETokenizer
from playground.engine.data.tokenizer import CharTokenizer
from playground.export import ExportError, export_model, exporter, gguf_file, verify
from tests.export.conftest import BPE_TEXT, TEXT, random_model, save

HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None


@pytest.fixture
def reader_only(monkeypatch):
    """As if llama-cpp-python were not installed: the file is checked with gguf's reader."""
    monkeypatch.setitem(exporter.VERIFIER, "gguf", "no_such_module_for_gguf")


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(BPE_TEXT, 300)


def field(reader, key):
    return reader.get_field(key).contents()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".export-tmp"))


def test_a_bpe_model_reads_back_exactly_with_its_end_of_text(bpe, tmp_path, reader_only):
    model = random_model(bpe, activation="gelu_tanh", head_bias=False)
    out = tmp_path / "bpe.gguf"
    report = export_model(save(tmp_path, "bpe", model, bpe), "gguf", out)
    assert report.verified and report.checked_by.startswith("gguf's reader")
    assert report.exact and report.max_logprob_error < 1e-4 and report.greedy_match
    assert report.files == ["bpe.gguf"] and not leftovers(tmp_path)
    assert any("llama-cpp-python is not installed" in w for w in report.warnings)
    reader = gguf.GGUFReader(str(out))
    assert field(reader, "general.architecture") == "gpt2" and field(reader, "general.name") == "bpe"
    assert field(reader, "gpt2.context_length") == 256   # block 16, in llama.cpp's steps of 256
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == bpe.vocab_size and tokens[bpe.end_of_text] == END_OF_TEXT
    assert field(reader, "tokenizer.ggml.eos_token_id") == bpe.end_of_text == bpe.vocab_size - 1
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    table = next(t for t in reader.tensors if t.name == "position_embd.weight")
    assert tuple(table.shape) == (16, 256)   # gguf lists (columns, rows): padded to the context


def test_a_character_model_gets_an_end_of_text_token_that_never_wins(tmp_path):
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, activation="gelu_tanh", head_bias=False)
    plan = gguf_file.convert(model, tokenizer)
    eot = tokenizer.vocab_size
    assert plan.end_of_text == eot and plan.tokens[eot] == END_OF_TEXT and len(plan.tokens) == eot + 1
    assert not any("token 11" in w for w in plan.warnings)
    gguf_file.write(plan, tmp_path / "c.gguf", "c")
    rebuilt = gguf_file.read_back(tmp_path / "c.gguf", plan)
    ids = torch.randint(0, eot, (4, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = rebuilt(ids)[0]
    gap = logits[..., :eot].min(-1).values - logits[..., eot]
    assert float(gap.min()) > 50   # MARGIN (60) below every other token, whatever the input


def test_without_a_safe_end_of_text_token_the_export_warns_of_token_11():
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, activation="gelu_tanh", head_bias=False)
    with torch.no_grad():
        model.ln_f.bias.zero_()   # no bias to build a never-winning row from
    plan = gguf_file.convert(model, tokenizer)
    assert plan.end_of_text is None and len(plan.tokens) == tokenizer.vocab_size
    (said,) = [w for w in plan.warnings if "end-of-text" in w]
    assert said == (f"the model has no end-of-text token and none could be added safely: llama.cpp and Ollama "
                     f"take token 11 ({tokenizer.label(11)!r}) as the end of the text and stop there; train a "
                     "BPE model (it has one) to avoid it")
    for size, word in ((11, False), (12, True)):   # token 11 exists from a vocabulary of 12 on
        small = CharTokenizer([chr(0x61 + i) for i in range(size)])
        model = random_model(small, activation="gelu_tanh", head_bias=False)
        with torch.no_grad():
            model.ln_f.bias.zero_()
        (said,) = [w for w in gguf_file.convert(model, small).warnings if "end-of-text" in w]
        assert ("token 11" in said) == word and (word or said == "the model has no end-of-text token")


def test_the_context_is_the_block_in_llama_cpp_steps():
    assert [gguf_file.context_of(random_model(CharTokenizer.from_text(TEXT), block_size=b).config)
            for b in (16, 256, 300)] == [256, 256, 512]


def test_what_is_not_exact_is_said(bpe, tmp_path, reader_only):
    tokenizer = CharTokenizer.from_text(TEXT)
    rope = random_model(tokenizer, position="rope", head_bias=False)    # exact GELU, rotary
    report = export_model(save(tmp_path, "rope", rope, tokenizer), "gguf", tmp_path / "rope.gguf")
    assert report.architecture == "llama.cpp starcoder2"
    said = " ".join(report.warnings)
    assert "exact for the first 16 tokens" in said
    assert ("llama.cpp computes GPT-2's tanh GELU and this model was trained with the exact GELU: its "
            "log-probabilities are close, not equal (see the figure above); train with --activation gelu_tanh "
            "for a model llama.cpp computes as we do") in report.warnings
    biased = random_model(bpe, activation="gelu_tanh")   # 300 tokens' head bias into width 16
    report = export_model(save(tmp_path, "biased", biased, bpe), "gguf", tmp_path / "biased.gguf")
    assert not report.exact and any("--no-head-bias" in w for w in report.warnings)


def test_a_file_that_reads_back_wrong_is_refused_and_removed(tmp_path, monkeypatch, reader_only):
    tokenizer = CharTokenizer.from_text(TEXT)
    path = save(tmp_path, "m", random_model(tokenizer, activation="gelu_tanh", head_bias=False), tokenizer)
    real = gguf_file.write

    def swapped(plan, target, name):   # two blocks' MLPs swapped: every name and shape still right
        t = plan.tensors
        t["blk.0.ffn_up.weight"], t["blk.1.ffn_up.weight"] = t["blk.1.ffn_up.weight"], t["blk.0.ffn_up.weight"]
        real(plan, target, name)
    monkeypatch.setattr(gguf_file, "write", swapped)
    with pytest.raises(ExportError, match="verification failed: the GGUF file's tensors give log-prob"):
        export_model(path, "gguf", tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("gap, outcome", [(0.02, "warns"), (0.5, "refuses")])
def test_llama_cpp_beyond_its_tolerance_is_said_and_far_beyond_refused(bpe, tmp_path, monkeypatch, gap, outcome):
    from playground.export import gguf_check
    monkeypatch.setitem(exporter.VERIFIER, "gguf", "json")   # "installed": the check below stands in
    monkeypatch.setattr(gguf_check, "in_llama_cpp", lambda model, tokenizer, path, plan, own, prompt, n:
                        (gap, verify.greedy_ours(model, tokenizer, prompt, n), tokenizer.decode(
                            verify.greedy_ours(model, tokenizer, prompt, n)), []))
    path = save(tmp_path, "m", random_model(bpe, activation="gelu_tanh", head_bias=False), bpe)
    if outcome == "refuses":
        with pytest.raises(ExportError, match="although the file reads back exactly"):
            export_model(path, "gguf", tmp_path / "m.gguf")
        assert not (tmp_path / "m.gguf").exists() and not leftovers(tmp_path)
    else:
        report = export_model(path, "gguf", tmp_path / "m.gguf")
        assert not report.exact and any("half-precision GELU" in w for w in report.warnings)


@pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python is not installed (the llama extra)")
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_llama_cpp_runs_it_as_we_do(bpe, tmp_path, position):
    model = random_model(bpe, activation="gelu_tanh", head_bias=False, position=position)
    report = export_model(save(tmp_path, "m", model, bpe), "gguf", tmp_path / "m.gguf")
    assert report.checked_by.startswith("llama.cpp")
    assert report.exact and report.max_logprob_error < 1e-2 and report.greedy_match
    from llama_cpp import Llama
    llm = Llama(str(tmp_path / "m.gguf"), n_ctx=0, verbose=False)
    text = "Café au lait, naïve: to be 😀"
    assert llm.tokenize(text.encode(), add_bos=False, special=False) == bpe.encode_lenient(text).ids
    assert llm.token_eos() == bpe.end_of_text and llm.n_ctx() == 256
    llm.close()


def test_bad_out_is_one_line_and_loses_nothing(char_checkpoint, tmp_path, capsys):
    mine = tmp_path / "mine.gguf"
    mine.write_text("keep me")
    for out, words in ((mine, "exists: choose another --out, or --force"),
                       (tmp_path / "model", "--out names the file to write"),
                       (tmp_path / "nowhere" / "m.gguf", "does not exist")):
        assert main(["export", str(char_checkpoint), "--format", "gguf", "--out", str(out), "--quiet"]) == 2
        assert words in capsys.readouterr().err
    (tmp_path / "folder.gguf").mkdir()
    assert main(["export", str(char_checkpoint), "--format", "gguf", "--out", str(tmp_path / "folder.gguf")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert mine.read_text() == "keep me" and not leftovers(tmp_path)


def test_a_read_only_folder_is_one_line(char_checkpoint, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:   # root writes anyway: make the folder refuse as a read-only one would
            probe.write_text("")
            probe.unlink()
            monkeypatch.setattr("tempfile.mkdtemp", lambda **_: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
        except PermissionError:
            pass
        assert main(["export", str(char_checkpoint), "--format", "gguf", "--out", str(folder / "m.gguf"),
                     "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot write in {folder}: Permission denied") and err.count("\n") == 1
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_too_large_for_the_format_or_the_disk_is_refused_before_writing(char_checkpoint, tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.setattr(exporter, "ONNX_LIMIT", 1000)   # this model's weights are larger than that
    assert main(["export", str(char_checkpoint), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "at most 0.0 GB: export --format hf or gguf" in capsys.readouterr().err
    import collections
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    assert main(["export", str(char_checkpoint), "--format", "gguf", "--out", str(tmp_path / "m.gguf")]) == 2
    assert "not enough room in" in capsys.readouterr().err
    assert not any(p.name.startswith(("m.", ".m.")) for p in tmp_path.iterdir())


def byte_level(data: bytes) -> str:
    """GPT-2's byte-level spelling (its bytes_to_unicode), written out independently: printable
    bytes stand for themselves, the others for 256, 257, ... in byte order."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    others = [b for b in range(256) if b not in keep]
    return "".join(chr(b) if b in keep else chr(256 + others.index(b)) for b in data)


def test_the_gguf_names_and_vocabulary_by_hand():
    """llama.cpp's tensor names for every one of ours, the learned table padded with its last row
    to the context, a character vocabulary spelled as byte-level BPE with merges for each
    multi-byte character, and the end-of-text token appended with a zero embedding."""
    tokenizer = CharTokenizer(list("a é€"))
    model = random_model(tokenizer, activation="gelu_tanh")
    sd = model.state_dict()
    plan = gguf_file.convert(model, tokenizer)
    delta, _ = gguf_file.hf.fold_head_bias(sd["lm_head.weight"], sd["lm_head.bias"])
    assert (plan.arch, plan.context, plan.eps, plan.end_of_text, plan.exact_activation) == ("gpt2", 256, 1e-5, 4, True)
    assert plan.tokens == ["a", byte_level(b" "), byte_level("é".encode()), byte_level("€".encode()), END_OF_TEXT]
    assert plan.tokens[1:4] == ["Ġ", "Ã©", "â\u0124¬"] and plan.token_types == [1, 1, 1, 1, 3]
    assert plan.merges == ["Ã ©", "â \u0124", "â\u0124 ¬"]
    expected = {"token_embd.weight": torch.cat([sd["wte.weight"], torch.zeros(1, 16)]),
                "output_norm.weight": sd["ln_f.weight"], "output_norm.bias": sd["ln_f.bias"] + delta,
                "position_embd.weight": torch.cat([sd["wpe.weight"], sd["wpe.weight"][-1:].expand(240, 16)])}
    for i in range(2):
        for ours, theirs in (("ln_1", "attn_norm"), ("attn.c_proj", "attn_output"), ("ln_2", "ffn_norm"),
                             ("mlp.c_fc", "ffn_up"), ("mlp.c_proj", "ffn_down"), ("attn.c_attn", "attn_qkv")):
            for part in ("weight", "bias"):
                expected[f"blk.{i}.{theirs}.{part}"] = sd[f"h.{i}.{ours}.{part}"]
    assert plan.tensors.keys() == expected.keys() | {"output.weight"}
    for name, tensor in expected.items():
        assert plan.tensors[name].dtype == np.float32 and np.array_equal(plan.tensors[name], tensor.numpy()), name
    head = plan.tensors["output.weight"]
    assert head.shape == (5, 16) and np.array_equal(head[:4], sd["lm_head.weight"].numpy())
    assert plan.notes[0] == "head bias folded into the final layer norm's bias (exact)"
    assert plan.notes[1].startswith("end-of-text token 4 added (the model has none; its logit stays 60 below")
    assert plan.notes[2] == ("learned positions -> llama.cpp's gpt2, context 256 tokens (the position table of 16 "
                             "padded with its last row); a larger -c aborts llama.cpp past the table")
    assert len(plan.warnings) == 1 and plan.warnings[0].startswith(
        "exact for the first 16 tokens (prompt and output together), the model's block; llama.cpp counts its "
        "context in steps of 256, so it goes on to 256,")
    full = gguf_file.convert(random_model(tokenizer, activation="gelu_tanh", block_size=256), tokenizer)
    assert full.warnings == [] and full.notes[-1].endswith("context 256 tokens; a larger -c aborts llama.cpp past the table")


def test_the_rotary_gguf_names_by_hand():
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, position="rope", head_bias=False, rope_base=500.0, tie_embeddings=True)
    sd = model.state_dict()
    plan = gguf_file.convert(model, tokenizer)
    assert (plan.arch, plan.exact_activation, plan.notes[-1]) == (
        "starcoder2", False, "rotary positions -> llama.cpp's starcoder2, context 256 tokens")
    for i in range(2):
        for part in ("weight", "bias"):
            fused = sd[f"h.{i}.attn.c_attn.{part}"].numpy()
            for j, x in enumerate("qkv"):
                assert np.array_equal(plan.tensors[f"blk.{i}.attn_{x}.{part}"], fused[16 * j:16 * j + 16])
    assert not any(name.startswith("position_embd") or "attn_qkv" in name for name in plan.tensors)
    rebuilt = gguf_file.rebuild({k: torch.from_numpy(v) for k, v in plan.tensors.items()}, model.config, 1e-4,
                                len(plan.tokens))
    assert rebuilt.config.activation == "gelu_tanh" and not rebuilt.config.head_bias and not rebuilt.training
    assert not rebuilt.config.tie_embeddings   # llama.cpp's head is its own tensor (here with the end-of-text row)
    assert rebuilt.wte.weight[15].abs().sum() == 0 < rebuilt.lm_head.weight[15].abs().sum()
    assert all(m.eps == 1e-4 for m in rebuilt.modules() if isinstance(m, torch.nn.LayerNorm))
    for name, tensor in rebuilt.state_dict().items():
        if name in sd and "inv_freq" not in name:   # the inverse of the mapping (and the end-of-text row)
            assert torch.equal(tensor[: len(sd[name])], sd[name]), name


def test_a_never_winning_row_by_hand():
    """x = g∘n + b with Σn = 0: the row -(K/S)/g gives the logit -K for every n."""
    generator = torch.Generator().manual_seed(4)
    weight, gain, bias = (torch.randn(5, 8, generator=generator), torch.rand(8, generator=generator) + 0.5,
                          torch.randn(8, generator=generator))
    row = gguf_file.never_row(weight, gain, bias).double()
    W, g, b = weight.double(), gain.double(), bias.double()
    reach = float(((W * g).norm(dim=1) * 8 ** 0.5 + (W @ b).abs()).max())
    n = torch.randn(3, 8, generator=generator, dtype=torch.float64)
    n = n - n.mean(-1, keepdim=True)
    assert torch.allclose((g * n + b) @ row, torch.full((3,), -(reach + 60.0), dtype=torch.float64))
    assert gguf_file.never_row(weight, torch.cat([gain[:7], torch.zeros(1)]), bias) is None  # a zero gain
    assert gguf_file.never_row(weight, gain, torch.zeros(8)) is None            # S = 0
    assert gguf_file.never_row(weight, gain, bias * 1e-9) is None               # S too small for float32
    for scale, usable in ((5e-6, True), (3e-6, False)):   # float32's rounding of Σn: about 25, then 42 > 60 / 2
        small = bias.double() * scale
        K = float(((W * g).norm(dim=1) * 8 ** 0.5 + (W @ small).abs()).max()) + 60.0
        rounding = K / abs(float((small / g).sum())) * (8 + float((small / g).abs().sum())) * 1e-6
        assert (rounding < 30) is usable and (gguf_file.never_row(weight, gain, bias * scale) is not None) is usable
    # large ratios b/g that cancel in S: their sizes add to the rounding (here about 57 > 30)
    cancelling = gain * torch.tensor([50.0, -50.0 + 5e-4, 0, 0, 0, 0, 0, 0])
    assert gguf_file.never_row(weight, gain, cancelling) is None
    assert gguf_file.never_row(weight, gain, gain * torch.tensor([50.0, -50.0 + 2e-3, 0, 0, 0, 0, 0, 0])) is not None


def test_the_bpe_gguf_vocabulary_by_hand():
    """Every id's piece, padding ids as [PADi] of type unused, the end-of-text token (and only it)
    a control token, merges as 'left right' strings; an older model whose end-of-text token is a
    plain word still gets it as its end of text; other tokenizers and lone surrogates refused."""
    import copy
    import json
    tok = BPETokenizer.train(BPE_TEXT, 300)
    n = tok.tok.get_vocab_size()
    tokens, types, merges, eot = gguf_file.vocabulary(tok, n + 2)
    assert eot == tok.end_of_text and tokens[eot] == END_OF_TEXT
    assert tokens[:n] == [tok.tok.id_to_token(i) for i in range(n)]
    assert tokens[n:] == [f"[PAD{n}]", f"[PAD{n + 1}]"] and types[n:] == [gguf_file.UNUSED] * 2
    assert types[:n] == [gguf_file.CONTROL if i == eot else gguf_file.NORMAL for i in range(n)]
    pairs = json.loads(tok.tok.to_str())["model"]["merges"]
    assert len(merges) == len(pairs) > 0 and all(m.count(" ") == 1 for m in merges)
    assert merges[0] == (pairs[0] if isinstance(pairs[0], str) else f"{pairs[0][0]} {pairs[0][1]}")
    old = copy.copy(tok)
    old.special = {}   # an older model: its end-of-text token was an ordinary word
    tokens, types, _, eot = gguf_file.vocabulary(old, n)
    assert old.end_of_text is None and eot == tokens.index(END_OF_TEXT) and types[eot] == gguf_file.CONTROL
    assert types.count(gguf_file.CONTROL) == 1

    class Words:
        kind = "word"
    with pytest.raises(ExportError) as caught:
        gguf_file.vocabulary(Words(), 3)
    assert str(caught.value) == "cannot export a 'word' tokenizer to GGUF: only characters and BPE"
    with pytest.raises(ExportError) as caught:
        gguf_file.vocabulary(CharTokenizer(["a", "\ud800"]), 2)
    assert str(caught.value) == ("the vocabulary holds a lone surrogate (half of a UTF-16 pair), which "
                                 "llama.cpp's tokenizer cannot hold")


def test_a_head_bias_that_cannot_fold_exactly_is_said_to_be_least_squares():
    """More characters than the width + 1: the head's bias cannot be rebuilt exactly in the
    final norm's bias, and the note says so with its residual."""
    tokenizer = CharTokenizer([chr(0x61 + i) for i in range(26)] + [chr(0x41 + i) for i in range(14)])
    plan = gguf_file.convert(random_model(tokenizer, activation="gelu_tanh"), tokenizer)   # width 16, 40 tokens
    assert plan.fold_residual > gguf_file.hf.FOLD_EXACT
    assert plan.notes[0] == f"head bias folded into the final layer norm's bias (least squares, residual {plan.fold_residual:.2g})"
