"""The routes to G and its spectrum: Jacobian, factored Gram, streamed, matrix-free; `dispatch` picks."""
