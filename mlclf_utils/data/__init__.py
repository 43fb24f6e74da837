"""Reading, cleaning, labelling, splitting and tokenizing a table of texts (stages 01-02)."""
