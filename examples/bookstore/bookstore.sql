-- The sqlite-rest demo database: a small bookstore (our own example data).
-- `sqlite-rest demo` builds it on first run; `sqlite3 bookstore.db < bookstore.sql` does too.
PRAGMA foreign_keys = ON;

CREATE TABLE authors (
  id      INTEGER PRIMARY KEY,
  name    TEXT NOT NULL UNIQUE,
  born    INTEGER,
  country TEXT
);

CREATE TABLE books (
  id        INTEGER PRIMARY KEY,
  title     TEXT NOT NULL,
  author_id INTEGER NOT NULL REFERENCES authors(id),
  published INTEGER,
  price     REAL NOT NULL,
  in_stock  BOOLEAN NOT NULL DEFAULT 1,
  details   JSON
);
CREATE INDEX books_author_id ON books(author_id);

CREATE TABLE reviews (
  id       INTEGER PRIMARY KEY,
  book_id  INTEGER NOT NULL REFERENCES books(id),
  reviewer TEXT NOT NULL,
  rating   INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
  body     TEXT
);

CREATE VIEW books_in_stock AS
  SELECT b.id, b.title, a.name AS author, b.price
  FROM books b JOIN authors a ON a.id = b.author_id
  WHERE b.in_stock;

INSERT INTO authors (id, name, born, country) VALUES
  (1, 'Jane Austen', 1775, 'England'),
  (2, 'Fyodor Dostoevsky', 1821, 'Russia'),
  (3, 'Mary Shelley', 1797, 'England'),
  (4, 'Herman Melville', 1819, 'United States'),
  (5, 'Leo Tolstoy', 1828, 'Russia'),
  (6, 'Charlotte Brontë', 1816, 'England'),
  (7, 'Mark Twain', 1835, 'United States'),
  (8, 'Jules Verne', 1828, 'France');

INSERT INTO books (id, title, author_id, published, price, in_stock, details) VALUES
  (1,  'Pride and Prejudice', 1, 1813, 9.99, 1, '{"pages": 432, "genres": ["romance", "satire"]}'),
  (2,  'Emma', 1, 1815, 8.5, 1, '{"pages": 474, "genres": ["romance"]}'),
  (3,  'Persuasion', 1, 1817, 7.25, 0, '{"pages": 249, "genres": ["romance"]}'),
  (4,  'Crime and Punishment', 2, 1866, 12.0, 1, '{"pages": 671, "genres": ["psychological", "crime"]}'),
  (5,  'The Brothers Karamazov', 2, 1880, 14.5, 1, '{"pages": 796, "genres": ["philosophical"]}'),
  (6,  'Frankenstein', 3, 1818, 6.99, 1, '{"pages": 280, "genres": ["gothic", "science fiction"]}'),
  (7,  'Moby-Dick', 4, 1851, 11.75, 0, '{"pages": 635, "genres": ["adventure"]}'),
  (8,  'War and Peace', 5, 1869, 18.0, 1, '{"pages": 1225, "genres": ["historical"]}'),
  (9,  'Anna Karenina', 5, 1878, 13.25, 1, '{"pages": 864, "genres": ["romance", "tragedy"]}'),
  (10, 'Jane Eyre', 6, 1847, 8.99, 1, '{"pages": 532, "genres": ["gothic", "romance"]}'),
  (11, 'Adventures of Huckleberry Finn', 7, 1884, 7.5, 1, '{"pages": 366, "genres": ["adventure", "satire"]}'),
  (12, 'The Adventures of Tom Sawyer', 7, 1876, 6.5, 0, '{"pages": 274, "genres": ["adventure"]}'),
  (13, 'Twenty Thousand Leagues Under the Seas', 8, 1870, 9.5, 1, '{"pages": 426, "genres": ["science fiction", "adventure"]}'),
  (14, 'Around the World in Eighty Days', 8, 1872, 7.0, 1, '{"pages": 252, "genres": ["adventure"]}');

INSERT INTO reviews (book_id, reviewer, rating, body) VALUES
  (1, 'ada', 5, 'Sharp, funny and kind.'),
  (1, 'grace', 4, NULL),
  (4, 'alan', 5, 'Could not put it down.'),
  (6, 'ada', 4, 'Darker than I remembered.'),
  (8, 'grace', 3, 'Long, but worth it.'),
  (13, 'linus', 5, 'The Nautilus!'),
  (11, 'alan', 4, NULL);

-- Full-text search over titles: an external-content FTS5 index (English stemming) kept in
-- step by triggers, so `/books?title=wfts.adventures or "war and peace"` works.
CREATE VIRTUAL TABLE books_search USING fts5(title, content='books', content_rowid='id',
  tokenize='porter unicode61');
CREATE TRIGGER books_search_insert AFTER INSERT ON books BEGIN
  INSERT INTO books_search (rowid, title) VALUES (new.id, new.title);
END;
CREATE TRIGGER books_search_delete AFTER DELETE ON books BEGIN
  INSERT INTO books_search (books_search, rowid, title) VALUES ('delete', old.id, old.title);
END;
CREATE TRIGGER books_search_update AFTER UPDATE OF title ON books BEGIN
  INSERT INTO books_search (books_search, rowid, title) VALUES ('delete', old.id, old.title);
  INSERT INTO books_search (rowid, title) VALUES (new.id, new.title);
END;
INSERT INTO books_search (books_search) VALUES ('rebuild');
