"""A LoRA adapter trained on our model applies with peft's PeftModel.from_pretrained to our
transformers export of the same base and gives what our merged model gives; an adapter for
another base is refused with the reason; the finetune command end to end."""

import json

import pytest
import torch

from playground.engine.config import AdaptConfig, ModelConfig, TrainConfig
from playground.engine.errors import ConfigError
from playground.engine.model import checkpoint
from playground.engine.model.lora import merged
from playground.engine.training.adapt import check_adapter, prepare_adaptation, save_adapter
from playground.engine.training.prepare import prepare_run

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

OLD = "to be or not to be, that is the question. " * 30
NEW = "not to be or to be, the question is that. " * 30
TRAIN = TrainConfig(batch_size=16, max_steps=40, learning_rate=1e-2, min_lr=1e-2, eval_interval=20,
                    eval_batches=2, sample_chars=0, threads=1)


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_our_adapter_on_our_export_equals_our_merged_model(tmp_path, position):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from playground.export.exporter import export_model
    model = ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, position=position, head_bias=False)
    base = prepare_run("old", OLD, model, TRAIN)
    list(base.run())
    base_file = checkpoint.save(tmp_path / "base", base.checkpoint())
    adapt = AdaptConfig(method="lora", rank=4, alpha=8)
    trainer = prepare_adaptation(checkpoint.load(base_file), "new", NEW, TRAIN, adapt)
    list(trainer.run())
    folder = save_adapter(trainer.model, adapt, tmp_path / "adapter", "base")
    assert (folder / "adapter_model.safetensors").exists() and json.loads(
        (folder / "adapter_config.json").read_text())["r"] == 4
    export_model(str(base_file), "hf", str(tmp_path / "hf"))
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")), str(folder)).eval()
    ours = merged(trainer.model).eval()
    ids = torch.tensor([trainer.corpus.tokenizer.encode(NEW[:16])])
    with torch.no_grad():
        mine = ours(ids)[0].log_softmax(-1)
        theirs = with_adapter(ids).logits.log_softmax(-1)
    assert float((mine - theirs).abs().max()) < 1e-4


def test_an_adapter_for_another_base_is_refused_with_the_reason(tmp_path):
    model = ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, head_bias=False)
    base = prepare_run("old", OLD, model, TRAIN.replace(max_steps=2))
    trainer = prepare_adaptation(base.checkpoint(), "new", NEW, TRAIN.replace(max_steps=2), AdaptConfig(rank=2))
    folder = save_adapter(trainer.model, AdaptConfig(rank=2), tmp_path / "adapter")
    assert check_adapter(folder, model)["r"] == 2
    with pytest.raises(ConfigError, match="another width"):
        check_adapter(folder, model.replace(n_embd=32))
    with pytest.raises(ConfigError, match="deeper model"):
        check_adapter(folder, model.replace(n_layer=1))
    with pytest.raises(ConfigError, match="not empty"):
        save_adapter(trainer.model, AdaptConfig(rank=2), folder)


def test_the_finetune_command_logs_what_it_forgets_and_writes_both(tmp_path, capsys):
    from playground.cli import main
    model = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, head_bias=False)
    base = prepare_run("old", OLD, model, TRAIN)
    list(base.run())
    base_file = checkpoint.save(tmp_path / "base", base.checkpoint())
    new = tmp_path / "new.txt"
    new.write_text(NEW)
    log = tmp_path / "log.jsonl"
    assert main(["finetune", str(base_file), "--corpus", str(new), "--method", "lora", "--rank", "4", "--steps", "30",
                 "--eval-interval", "10", "--threads", "1", "--out", str(tmp_path / "adapted"),
                 "--adapter-out", str(tmp_path / "adapter"), "--log-json", str(log), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "of " in err and "parameters train (" in err
    evals = [json.loads(line) for line in log.read_text().splitlines() if '"eval"' in line]
    assert [e["step"] for e in evals] == [0, 10, 20, 30] and all(e["base_val_loss"] is not None and e["val_loss"] is not None for e in evals)
    adapted = checkpoint.load(tmp_path / "adapted.safetensors")  # merged: an ordinary model file
    assert adapted.model.num_params() == base.model.num_params()
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    # a full fine-tune at a high rate forgets: the hint says so, in the command line's flags
    assert main(["finetune", str(base_file), "--corpus", str(new), "--method", "full", "--lr", "0.03", "--steps", "30",
                 "--eval-interval", "10", "--threads", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "Forgetting: the original text's loss rose" in err and "--replay 0.25" in err and "--method lora" in err
    refused = main(["finetune", str(base_file), "--text", "QQQ" * 40, "--steps", "2"])
    assert refused == 2 and "never saw ('Q')" in capsys.readouterr().err
