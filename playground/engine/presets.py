"""Named starting points: a corpus plus model and training settings."""

from __future__ import annotations

from dataclasses import dataclass

from playground.engine.config import ModelConfig, TrainConfig


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    corpus: str              # a built-in corpus name ("shakespeare" is found on disk)
    model: ModelConfig       # vocab_size is replaced by the corpus's own
    train: TrainConfig
    device: str = "cpu"      # where it is meant to train; the window lists the CPU ones


# what the five-minute preset grows from
TWO_MINUTES = Preset("shakespeare-2min", "The lowest validation loss in two minutes of training here (2 cores): "
              "BPE subwords (1,024), 4 layers x 128, rotary positions, block 128 tokens, Muon, 600 steps",
              "shakespeare",
              ModelConfig(vocab_size=1024, n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0,
                          position="rope"),
              TrainConfig(batch_size=16, max_steps=600, learning_rate=0.04, min_lr=0.004,
                          warmup_steps=20, weight_decay=0.0, beta1=0.9, beta2=0.99, grad_clip=1.0,
                          eval_interval=150, eval_batches=10, sample_chars=100, optimizer="muon",
                          muon_lr=0.05, tokenizer="bpe", bpe_vocab=1024))


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("seed", "The reference run: the phrase corpus, 2 layers x 64 wide, 500 steps (~103.8k params)",
           "phrase",
           ModelConfig(vocab_size=13, n_layer=2, n_head=4, n_embd=64, block_size=32, dropout=0.0),
           TrainConfig(batch_size=32, max_steps=500, learning_rate=3e-3, min_lr=3e-3,
                       warmup_steps=0, weight_decay=0.0, grad_clip=0.0, eval_interval=100,
                       eval_batches=5, sample_chars=60)),
    Preset("shakespeare-cpu", "The common CPU recipe on Tiny Shakespeare: 4 layers x 128, block 64, 2000 steps",
           "shakespeare",
           ModelConfig(vocab_size=65, n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),
           TrainConfig(batch_size=12, max_steps=2000, learning_rate=1e-3, min_lr=1e-4,
                       warmup_steps=100, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0,
                       eval_interval=250, eval_batches=20, sample_chars=200)),
    Preset("shakespeare-fast", "Tiny Shakespeare to validation loss 1.88 in about 12 s here: "
           "2 layers x 128, rotary positions, Muon, a high AdamW rate, 150 steps",
           "shakespeare",
           ModelConfig(vocab_size=65, n_layer=2, n_head=4, n_embd=128, block_size=64, dropout=0.0,
                       position="rope"),
           TrainConfig(batch_size=32, max_steps=150, learning_rate=0.07, min_lr=0.007,
                       warmup_steps=20, weight_decay=0.0, beta1=0.9, beta2=0.99, grad_clip=1.0,
                       eval_interval=50, eval_batches=10, sample_chars=100, optimizer="muon",
                       muon_lr=0.05)),
    TWO_MINUTES,
    # resources/docs/performance.md has what each change gained (issue 26, goal 1)
    Preset("shakespeare-5min", "nanoGPT's GPU result (validation 1.47) in under five minutes of training here "
           "(2 cores): the two-minute recipe, 1,600 steps at half its Muon rate, dropout 0.15 against the "
           "text's repetition (not on attention), and a moving average of the weights",
           "shakespeare", TWO_MINUTES.model.replace(dropout=0.15, attention_dropout=False),
           TWO_MINUTES.train.replace(max_steps=1600, eval_interval=400, ema=0.99, muon_lr=0.025)),
    # Set from the CPU findings and nanoGPT's GPU recipe (6x384, block 256, dropout 0.2, which
    # overfits after ~2000 of its steps); not yet tuned on a GPU: none was available.
    Preset("shakespeare-gpu", "For a CUDA GPU: nanoGPT's Shakespeare model size (6 layers x 384, block 256) "
           "with rotary positions and Muon, to validation 1.47 in a fraction of its steps",
           "shakespeare",
           ModelConfig(vocab_size=65, n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2,
                       position="rope"),
           TrainConfig(batch_size=64, max_steps=1500, learning_rate=0.02, min_lr=0.002,
                       warmup_steps=50, weight_decay=0.0, beta1=0.9, beta2=0.99, grad_clip=1.0,
                       eval_interval=100, eval_batches=20, sample_chars=200, optimizer="muon",
                       muon_lr=0.04), device="cuda"),
    Preset("tiny", "A very small model for quick experiments on any built-in corpus",
           "fable",
           ModelConfig(vocab_size=65, n_layer=1, n_head=2, n_embd=32, block_size=32),
           TrainConfig(batch_size=16, max_steps=300, learning_rate=3e-3, min_lr=3e-4,
                       warmup_steps=20, eval_interval=50, eval_batches=10, sample_chars=80)),
    # Measured with python -m playground.bench.induction_formation (the README has the figures)
    Preset("induction", "Induction heads form within a minute or two here: the repeat corpus (random letters "
           "written twice), 2 layers x 64, rotary positions, 1,500 steps; see inspect --induction",
           "repeat",
           ModelConfig(vocab_size=27, n_layer=2, n_head=4, n_embd=64, block_size=64, dropout=0.0,
                       position="rope"),
           TrainConfig(batch_size=32, max_steps=1500, learning_rate=3e-3, min_lr=3e-4,
                       warmup_steps=50, weight_decay=0.0, grad_clip=1.0, eval_interval=100,
                       eval_batches=5, sample_chars=80)),
    Preset("arithmetic", "Learns two-digit sums; check its answers with prompts like '23+45='",
           "arithmetic",
           ModelConfig(vocab_size=13, n_layer=3, n_head=4, n_embd=96, block_size=32),
           TrainConfig(batch_size=32, max_steps=1500, learning_rate=2e-3, min_lr=2e-4,
                       warmup_steps=50, weight_decay=0.05, eval_interval=150, eval_batches=20,
                       sample_chars=80)),
]}


def get_preset(name: str) -> Preset:
    from playground.engine.errors import ConfigError
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
