"""The paper's two face analogies (6.3.2) as attribute queries: plain data, so that the command
line lists them without importing torch."""

# The paper's two analogies; long_hair plays woman (true) and man (false).
RECIPES = {
    "smile": dict(a="smiling & long_hair", b="~smiling & long_hair", c="~smiling & ~long_hair",
                  target="smiling & ~long_hair"),   # smiling woman - neutral woman + neutral man = smiling man
    "glasses": dict(a="glasses & ~long_hair", b="~glasses & ~long_hair", c="~glasses & long_hair",
                    target="glasses & long_hair"),  # man with glasses - man without + woman without = woman with
}
