"""docs/admin.md's settings reference is the one the schema generates; every key is documented."""

from gpuhub import docgen
from gpuhub.config.sections import accepted


def test_admin_reference_is_current(repo_root):
    assert docgen.main(["--check", "--file", str(repo_root / "docs" / "admin.md")]) == 0, (
        "docs/admin.md is stale: run `python -m gpuhub.docgen`"
    )


def test_every_setting_has_help_and_accepted_values():
    for _, cls in docgen.SECTIONS:
        for name, trait in cls.class_traits().items():
            assert len(trait.help) > 20, f"{cls.__name__}.{name} needs help text"
            assert accepted(trait), f"{cls.__name__}.{name} needs an 'accepted' tag (or integer bounds)"


def test_reference_names_every_key():
    text = docgen.reference()
    for _, cls in docgen.SECTIONS:
        for name in cls.class_trait_names():
            assert f"**`{name}`**" in text
    assert "c.GPUHubAuthenticator.admin_password_env" in text
