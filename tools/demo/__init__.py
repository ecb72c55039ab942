"""The demo model's recipe: ``python -m tools.demo.train`` then ``python -m tools.demo.evaluate``
(weights/numbers-en-de/README.md is its model card)."""
