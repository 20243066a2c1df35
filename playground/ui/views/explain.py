"""A "?" on every panel: one paragraph in plain words about what it shows."""

from __future__ import annotations

from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QScrollArea, QToolButton, QVBoxLayout, QWidget

from playground.ui.views.widgets import named, scrolled

EXPLANATIONS = {
    "Corpus": "The corpus is the text the model learns from. The model only ever sees characters: "
              "it counts the distinct ones (its vocabulary) and learns which character tends to "
              "come next. The last tenth is held back as validation text the model never trains "
              "on, so you can tell learning from memorising.",
    "Model and training": "Layers stack transformer blocks; width is the length of each "
                          "character's vector; heads split attention into independent lookups; the "
                          "block size is how far back the model can look. More of each learns more "
                          "but trains slower. The learning rate is the size of each update.",
    "Training": "Loss measures surprise: the average of -ln(probability) the model gave the right "
                "next character. A model that guesses at random among V characters scores ln(V), "
                "the dashed line, which is why training starts there. e^loss (perplexity) is how "
                "many characters it is effectively choosing between. Fine-tuning a model, the purple "
                "squares are its loss on the text it first learned: they rise as it forgets.",
    "Samples": "At each evaluation the model writes a short text from the same start and the same "
               "random seed, so every difference between samples comes from what the model "
               "learned. Scrub the timeline to watch noise turn into words.",
    "Generate": "The model writes one character at a time: it scores every character, the "
                "temperature sharpens (below 1) or flattens (above 1) those odds, top-k and top-p "
                "drop the unlikely ones, and one character is drawn. Temperature 0 always takes the "
                "likeliest. Click a character to see its odds; double-click a candidate to branch.",
    "Attention": "Attention lets each character look back at earlier ones. Each head learns its own "
                 "way of looking: one may attend to the previous character, another to the start of "
                 "the word. Row = the character predicting, column = the character looked at; the "
                 "upper triangle is the future, which the model may never see.",
    "Health": "The learning rate rises during warm-up, then decays along a cosine. The gradient norm "
              "is how strongly each step wants to change the weights; steps above the clip value "
              "are scaled down. A loss stuck at ln(V) means nothing is being learned; a rising or "
              "exploding loss usually means the learning rate is too high.",
    "Serve": "Serving puts a copy of the model behind an HTTP API that speaks OpenAI's "
             "completions and chat format, as vLLM, Ollama and llama.cpp's server do, so any "
             "OpenAI client or curl can ask it to write. It listens on this computer only "
             "(127.0.0.1) and streams one character at a time. There is no chat template: chat "
             "messages are joined as plain text for the model to continue.",
    "Temperature sweep": "The same prompt and random seed at several temperatures: low "
                         "temperatures repeat the safest patterns, high ones take more chances and "
                         "make more mistakes. It shows what temperature does to this model.",
    "Preferences": "After pretraining and fine-tuning, alignment teaches a model which of its own answers "
                   "people prefer. Show two writes two continuations of one prompt; pick the better one "
                   "(or call a tie, or skip) and each pick becomes a pair: the prompt, the chosen and the "
                   "rejected continuation. Tune runs DPO (Rafailov et al. 2023) on the pairs: it makes the "
                   "chosen continuation likelier than the rejected one, measured against a frozen copy of "
                   "where the model started. Beta keeps it close to that copy; the held-out accuracy "
                   "counts the pairs it never trained on that it now prefers as you did.",
    "Scaling": "Bigger models reach lower loss: the scaling-law papers (Kaplan et al. 2020, Hoffmann et "
               "al. 2022) found validation loss falls as a power of the parameter count, L(N) = E + "
               "A·N^-α, where E is what no model can do better (the text's own randomness). The ladder "
               "trains your own models of growing size and fits that curve. Two limits show on small "
               "corpora: a run whose validation loss was still falling at the end is undertrained (give it "
               "more tokens), and a run whose validation loss turned up has memorised its text: it is "
               "limited by data, not size. That is the other half of 'scale is the gap': more parameters "
               "help only with more text to learn from. Equal compute trains each size on the same FLOPs "
               "(6 x parameters x tokens); the best size per budget is your compute-optimal frontier.",
    "Inside the model": "Four ways to look inside the model in hand, read again at every evaluation while "
                        "you watch (only the view in sight is read, so training slows little): the logit "
                        "lens, where it is surprised, its embedding map and its induction heads. The ? "
                        "beside the tabs explains the view shown.",
    "Logit lens": "The logit lens (nostalgebraist 2020) asks what the model would predict if it stopped "
                  "early: the final layer norm and output head are applied to the running sum of vectors "
                  "(the residual stream) after the embeddings and after each block. Each row is a depth, "
                  "each column a token of the prompt; a cell shows the token that depth would predict "
                  "next and how sure it is, tinted by the chance it gives the token that really comes "
                  "next. Watch the right answer appear lower down as the model trains.",
    "Where it is surprised": "Each token of the validation text (text the model never trains on) tinted "
                             "by the probability the model gave it: green where it was confident, red "
                             "where the token was a long shot. The loss of a token is -ln of that "
                             "probability; their mean is the validation loss. Hover a token to see what "
                             "the model expected instead; the list gathers the worst places.",
    "Embedding map": "Each token starts as a learned vector. The map projects them onto the two "
                     "directions along which they differ most (PCA), so tokens the model treats alike "
                     "sit together: vowels often gather apart from consonants, digits together. The "
                     "axes keep their direction from one evaluation to the next, so you can watch the "
                     "points move. Learned positions get vectors too (a curve, position by position); "
                     "rotary positions turn queries and keys instead, so there is nothing to draw.",
    "Induction heads": "An induction head looks for the earlier occurrence of the current token and "
                       "copies what followed it: it lets a model repeat names and phrases it saw "
                       "once. The score is read on random tokens repeated twice: the attention a token "
                       "of the repeat pays to the token after its earlier occurrence. Olsson et al. "
                       "(2022) found such heads form suddenly, and the loss bends when they do; here the "
                       "loss on the repeat falls below the random half's. Try the induction preset.",
}


def help_key(title: str) -> str:
    """The part of a panel's object names that comes from its title: "Model and training" ->
    "ModelAndTraining" (helpModelAndTraining, helpModelAndTrainingText)."""
    return "".join(word.capitalize() for word in title.split())


HELP_LINES = 7  # the most a "?" paragraph takes of its panel; a longer one scrolls


def help_text(title: str, key: str) -> QScrollArea:
    """The panel's paragraph in a box of at most HELP_LINES lines: a long one scrolls inside it
    instead of making the panel, and so the window, taller than a laptop's screen."""
    text = named(QLabel(EXPLANATIONS[title]), f"help{key}Text", f"About {title}", EXPLANATIONS[title])
    text.setWordWrap(True)
    text.setStyleSheet("background: #eef4fb; padding: 6px; border-radius: 4px;")
    area = scrolled(text, f"help{key}Area", keep_width=False)
    area.setMaximumHeight(HELP_LINES * text.fontMetrics().lineSpacing() + 14)
    return area


def explained(title: str, widget: QWidget) -> QGroupBox:
    """A group box with a "?" button that shows or hides the panel's explanation."""
    box = QGroupBox()
    key = help_key(title)
    text = help_text(title, key)
    text.hide()
    button = named(QToolButton(), f"help{key}", f"What is {title}?", f"What is this? ({title})")
    button.setText("?")
    button.setCheckable(True)
    button.toggled.connect(text.setVisible)
    header = QHBoxLayout()
    heading = QLabel(f"<b>{title}</b>")
    header.addWidget(heading)
    header.addStretch(1)
    header.addWidget(button)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(6, 4, 6, 6)
    layout.addLayout(header)
    layout.addWidget(text)
    layout.addWidget(widget, 1)
    return box
