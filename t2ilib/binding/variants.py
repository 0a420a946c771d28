"""The variants notebook 11 compares, by name, and the ``train ssagan`` options of each."""

from __future__ import annotations

from t2ilib.binding.step import BindingConfig

__all__ = ["VARIANTS", "train_options"]

#: Name (:attr:`BindingConfig.name`, "baseline" for plain SSA-GAN) -> config.
VARIANTS: dict[str, BindingConfig | None] = {"baseline": None} | {
    config.name: config for config in (
        BindingConfig(word_generator=True),
        BindingConfig(word_discriminator=True),
        BindingConfig(swap_weight=1.0),
        BindingConfig(word_discriminator=True, swap_weight=1.0),
        BindingConfig(word_generator=True, swap_weight=1.0),
        BindingConfig(word_generator=True, word_discriminator=True, swap_weight=1.0),
        BindingConfig(damsm_swap_weight=1.0),
        BindingConfig(word_generator=True, damsm_swap_weight=1.0),
        BindingConfig(swap_weight=1.0, damsm_swap_weight=1.0),
    )}


def train_options(config: BindingConfig | None) -> list[str]:
    """The ``python -m t2ilib train ssagan`` options that make ``config`` (none for None)."""
    if config is None:
        return []
    default = BindingConfig(word_generator=True)
    options = [flag for flag, on in (("--word-generator", config.word_generator),
                                     ("--word-discriminator", config.word_discriminator)) if on]
    for field in ("swap_weight", "word_d_weight", "damsm_swap_weight"):
        value = getattr(config, field)
        if value != getattr(default, field):
            options += ["--" + field.replace("_", "-"), repr(value)]
    if (config.hidden_dim, config.key_dim) != (default.hidden_dim, default.key_dim):
        raise ValueError("the command line keeps hidden_dim and key_dim at their defaults")
    return options
