"""Export to ONNX: one file with the weights inside, dynamic batch and length, run by
onnxruntime to our model's log-probabilities and greedy text."""

import pytest
import torch

from playground.engine.config import SampleConfig
from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.model import checkpoint
from playground.engine.model.generation import generate
from playground.export import export_model
from tests.export.conftest import TEXT, random_model, save

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")


def session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def logprob_gap(model, sess, ids) -> float:
    with torch.no_grad():
        ours = model(ids)[0].log_softmax(-1)
    theirs = torch.from_numpy(sess.run(["logits"], {"input_ids": ids.numpy()})[0]).log_softmax(-1)
    return float((ours - theirs).abs().max())


def greedy(sess, tokenizer, prompt: str, n: int, window=None) -> str:
    ids = tokenizer.encode(prompt).ids
    for _ in range(n):
        context = torch.tensor([ids[-window:] if window else ids])
        ids.append(int(sess.run(["logits"], {"input_ids": context.numpy()})[0][0, -1].argmax()))
    return tokenizer.decode(ids[len(prompt):])


def test_char_model_with_head_bias_is_one_exact_onnx_file(char_checkpoint, tmp_path):
    out = tmp_path / "char.onnx"
    report = export_model(char_checkpoint, "onnx", out)
    assert report.exact and report.greedy_match and report.max_logprob_error < 1e-4
    assert report.files == ["char.onnx", "char.tokenizer.json"] and report.out == str(out)
    assert (tmp_path / "char.tokenizer.json").is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    proto = onnx.load(str(out), load_external_data=False)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert [i.name for i in proto.graph.input] == ["input_ids"] and all(dims)

    model = checkpoint.load(char_checkpoint).model
    sess = session(out)
    generator = torch.Generator().manual_seed(4)
    for shape in [(3, 16), (1, 1), (2, 7)]:
        assert logprob_gap(model, sess, torch.randint(0, 15, shape, generator=generator)) < 1e-4
    tokenizer = tokenizers.Tokenizer.from_file(str(tmp_path / "char.tokenizer.json"))
    ours = generate(model, CharTokenizer.from_text(TEXT), "to ", SampleConfig(max_new_tokens=13, temperature=0))
    assert greedy(sess, tokenizer, "to ", 13) == ours


def test_rotary_onnx_model_takes_any_length(tmp_path):
    tokenizer = CharTokenizer.from_text(TEXT)
    model = random_model(tokenizer, position="rope", block_size=8)
    report = export_model(save(tmp_path, "rope", model, tokenizer), "onnx", tmp_path / "rope.onnx")
    assert report.exact and report.greedy_match
    sess = session(tmp_path / "rope.onnx")
    generator = torch.Generator().manual_seed(5)
    for shape in [(2, 8), (1, 40)]:
        assert logprob_gap(model, sess, torch.randint(0, 15, shape, generator=generator)) < 1e-4
